"""``python -m runtime.pod.probe https HOST PORT PATH [HEADER...]``: the kubelet's https probe.

The pod's monitor has no TLS of its own: for an ``httpGet`` probe with ``scheme: HTTPS`` it
runs this (its ``https_probe_arg``) in the pod's network namespace, and kills it when the
probe's timeout is over. As the kubelet does, it sends ``GET PATH`` over TLS without
verifying the server's certificate, with ``Host``, ``User-Agent: kube-probe/corral``,
``Accept: */*`` and ``Connection: close`` (a HEADER ``Name: value`` of the same name replaces
one of those), and reads the status line: 200..399 is success.

It prints one line (``HTTP status 200``, or what failed) and exits 0 on success, 1 on
failure, 2 on a usage error.
"""

from __future__ import annotations

import sys

__all__ = ["https_get"]

USER_AGENT = "kube-probe/corral"


def _host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def https_get(host: str, port: int, path: str, headers: list[str]) -> tuple[bool, str]:
    """(success, what happened) for one https probe attempt."""
    import http.client
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the kubelet does not verify probe certificates either
    if host == "localhost":
        host = "127.0.0.1"  # as the monitor's own probes: no name resolution
    send = {
        "host": ("Host", _host_header(host, port)),
        "user-agent": ("User-Agent", USER_AGENT),
        "accept": ("Accept", "*/*"),
    }
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            return False, f"invalid header {h!r}: want 'Name: value'"
        send[name.strip().lower()] = (name.strip(), value.strip())
    send["connection"] = ("Connection", "close")
    conn = http.client.HTTPSConnection(host, port, context=ctx)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        for name, value in send.values():
            conn.putheader(name, value)
        conn.endheaders()
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as e:
        return False, f"GET https://{_host_header(host, port)}{path}: {_reason(e)}"
    finally:
        conn.close()
    return 200 <= status < 400, f"HTTP status {status}"


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 4 or args[0] != "https" or not args[2].isdigit():
        print("usage: python -m runtime.pod.probe https HOST PORT PATH [HEADER...]")
        return 2
    ok, what = https_get(args[1], int(args[2]), args[3], args[4:])
    print(what, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
