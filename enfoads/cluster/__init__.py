"""**cluster**: the Ray Serve backend (``enfoads serve --ray``), behind ``enfoads.work.backend``.

The head (this process) keeps HTTP, Socket.IO and the SQLite jobs, events and
assets; each role's model work runs in a Ray Serve deployment whose replicas
build their own runtime and residency manager under their own GPU's budget.

- ``wire``: what travels between head and replica (inputs, stream messages, errors).
- ``replica``: ``RoleReplica``, one role's services in a replica, a job run as a message stream (no Ray).
- ``plans``: replicas, autoscaling and GPU fractions per role, from settings and the catalogue.
- ``ray_cluster``: connecting to (or starting) Ray, deploying the roles, handles, health.
- ``backend``: ``RayBackend``: the local queue's rows and events, its handlers calling the replicas.

Needs ``pip install "enfoads[ray]"``; nothing here is imported without ``--ray``.
"""
