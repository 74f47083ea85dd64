// Light or dark, set before the page is drawn (a classic script in <head>, so no flash of the other
// theme): the system's choice, followed live, unless the user picked one here (kept in this browser).
(function () {
  const root = document.documentElement;
  const system = window.matchMedia("(prefers-color-scheme: dark)");
  const chosen = () => localStorage.getItem("theme");
  function apply() {
    const saved = chosen();
    root.dataset.theme = saved === "light" || saved === "dark" ? saved : system.matches ? "dark" : "light";
  }
  apply();
  system.addEventListener("change", () => {
    apply();
    window.dispatchEvent(new Event("themechange"));
  });
  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("theme-toggle")?.addEventListener("click", () => {
      localStorage.setItem("theme", root.dataset.theme === "dark" ? "light" : "dark");
      apply();
      window.dispatchEvent(new Event("themechange"));
    });
  });
})();
