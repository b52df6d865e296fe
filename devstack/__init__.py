"""The test stack: AWS (moto's server, with what it lacks added) and a Kubernetes API server,
both embedded, and the demos that run the real service against them.

Not part of the product: it is not in the wheel or the image, and nothing in lifecycled/
imports it. Run it from the repo root (`python -m devstack.demo`); pytest puts the root on the
path itself. aws/README.md and kube/README.md say what each emulates.
"""
