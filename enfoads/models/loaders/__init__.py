"""Loaders: the one code path that turns model files into live objects, for real and tiny weights alike."""
