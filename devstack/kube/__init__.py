"""An embedded Kubernetes API server for tests and the demo (see README.md)."""

from .server import KubeApiServer, KubeApiServerThread, RecordedRequest, write_kubeconfig
from .store import Store

__all__ = ["KubeApiServer", "KubeApiServerThread", "RecordedRequest", "Store", "write_kubeconfig"]
