"""The chaos suite: clusters, the network, the gateway and its store broken under load (README, "Chaos suite")."""
