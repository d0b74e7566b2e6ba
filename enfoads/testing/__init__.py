"""Test kit shipped with the package: the fake hub, replica repositories, simulated hardware."""
