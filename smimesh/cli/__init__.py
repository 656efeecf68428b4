"""Entry points: `smimesh` and the kubectl plugin `kubectl-smi`. Nothing imports cli."""
