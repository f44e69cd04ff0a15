"""``python -m gluon_bn.parallel.ps_node``: this process as a job's scheduler or parameter server.

``gluon-bn launch`` starts them.

MXNet starts serving inside ``import mxnet`` when ``DMLC_ROLE`` is set, before ``mxnet`` has
finished loading, so a server could not then unpickle the Trainer's optimizer from gluon-bn
(``distributed.ServerSGD``). The launcher passes the role in ``GLUON_BN_PS_ROLE`` instead;
this module imports gluon-bn first, then sets ``DMLC_ROLE`` and serves.
"""

import os

from .distributed import ServerSGD  # the optimizer the servers unpickle

ROLE_ENV = "GLUON_BN_PS_ROLE"

__all__ = ["ROLE_ENV", "ServerSGD", "serve"]


def serve() -> None:
    """Serve as the scheduler or a server until the workers finish (MXNet's own start-up, after the fact)."""
    from mxnet.kvstore import kvstore_server

    os.environ["DMLC_ROLE"] = os.environ.pop(ROLE_ENV)
    kvstore_server._init_kvstore_server_module()  # private: MXNet's only entry to a server loop


if __name__ == "__main__":
    serve()
