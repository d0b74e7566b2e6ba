"""Durable work: the SQLite file and its schema, jobs and their queue, events, output assets, the
background lane, and the backend protocol the engine submits through."""
