"""The result cache: which queries may be answered from it, their keys, their entries and where they are kept."""
