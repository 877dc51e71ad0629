"""The training loop and what surrounds it: the session builder, divergence guard, DDP, and the
device / precision / compile policy."""
