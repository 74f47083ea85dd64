"""Cluster management: clusters started and stopped with the load, through their scalers (docs/scaling.md)."""
