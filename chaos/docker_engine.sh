#!/usr/bin/env bash
# Make a Docker engine answer on this machine, for the container cluster kinds of the chaos suite.
#
# Idempotent: nothing happens when `docker info` already answers. Otherwise, as root, it installs
# Debian's docker.io if dockerd is missing and starts dockerd in the background without a bridge or
# iptables rules (containers use the host's network; all traffic stays on loopback). Every wait is
# bounded, and it never fails the build: when no engine can be had it says why and exits 0, and the
# container cases then skip with that reason.
set -u

WAIT=${DOCKER_ENGINE_WAIT:-60}
STATE=${DOCKER_ENGINE_STATE:-/var/lib/trino-ha-gateway/docker}
PIDFILE=$STATE/dockerd.pid
LOG=$STATE/dockerd.log

answers() { timeout 10 docker info >/dev/null 2>&1; }
give_up() {
	echo "docker engine: unavailable: $*; the chaos suite's container cases will be skipped" >&2
	exit 0
}

if command -v docker >/dev/null 2>&1 && answers; then
	echo "docker engine: running"
	exit 0
fi
[ "$(id -u)" = 0 ] || give_up "not root, so dockerd cannot be started here"
if ! command -v dockerd >/dev/null 2>&1; then
	echo "installing Debian package: docker.io"
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq docker.io; } >/dev/null ||
		give_up "apt-get install docker.io failed"
fi
command -v docker >/dev/null 2>&1 || give_up "no docker client on PATH"

mkdir -p "$STATE"
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
	# Ours, still starting (or stuck): wait for it below rather than start a second one.
	echo "docker engine: waiting for dockerd $(cat "$PIDFILE")"
else
	rm -f "$PIDFILE"
	echo "docker engine: starting dockerd (log: $LOG)"
	setsid dockerd --bridge=none --iptables=false --ip6tables=false \
		--data-root="$STATE/data" --pidfile="$PIDFILE" --host=unix:///var/run/docker.sock \
		</dev/null >>"$LOG" 2>&1 &
fi

deadline=$((SECONDS + WAIT))
while [ "$SECONDS" -lt "$deadline" ]; do
	if answers; then
		echo "docker engine: running (dockerd $(cat "$PIDFILE" 2>/dev/null), data in $STATE/data)"
		exit 0
	fi
	sleep 1
done
tail -n 20 "$LOG" >&2
give_up "dockerd did not answer within ${WAIT}s (the end of its log is above)"
