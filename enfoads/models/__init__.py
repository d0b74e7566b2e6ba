"""Models: the catalogue, hardware profiles, where files are (registry, manifest), how they are installed
(preload, installer), loaded (loaders, adapters), kept under budgets (residency), and the tiny kit."""
