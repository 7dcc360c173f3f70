"""Chameleon Cloud infrastructure: Blazar leases (python-chi), Terraform and k3s.

Each concern has its own module: credentials (:mod:`.auth`), the lease (:mod:`.lease`),
Terraform variables and runs (:mod:`.tfvars`, :mod:`.terraform`), reaching the nodes over SSH
(:mod:`.ssh`), k3s readiness and the kubeconfig (:mod:`.k3s`), and the resumable `up`/`down`
that ties them together (:mod:`.deployment`). python-chi is imported lazily: it is heavy.
"""
