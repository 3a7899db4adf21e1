"""moto_server with every request serialized: run by testenv/dynamo.sh and by the moto container.

moto_server answers requests on many threads and checks a DynamoDB condition, then writes,
without a lock, so two concurrent compare-and-swaps from the same version can both succeed
and an update is lost (seen with moto 5.2.5). DynamoDB's conditional writes are atomic, and
idemkit's tests depend on that. This wrapper runs moto's own WSGI application, as moto_server
does, behind one lock: requests still arrive on keep-alive connections from many threads, but
moto handles one at a time. Same flags as moto_server: -H HOST -p PORT.
"""

import argparse
import os
import signal
import sys
import threading

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    moto_app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            body = moto_app(environ, start_response)
            try:
                return [b"".join(body)]  # the whole response is produced under the lock
            finally:
                if hasattr(body, "close"):
                    body.close()

    run_simple(
        args.host,
        args.port,
        serialized,
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
