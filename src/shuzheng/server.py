"""`shuzheng serve`: gunicorn (threaded workers) on IPv4 and IPv6, plus the embedded job worker.

We open the listening sockets ourselves so that the IPv6 one is IPV6_V6ONLY: then 0.0.0.0:P and [::]:P
can both be bound on any host, whatever net.ipv6.bindv6only says, and gunicorn inherits them as fd://.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from gunicorn.app.base import BaseApplication


def open_listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from shuzheng.wsgi import application

        return application


def serve(hosts: list[str], port: int, workers: int, threads: int, with_worker: bool) -> None:
    sockets = []
    for host in hosts:
        try:
            sockets.append(open_listener(host, port))
        except OSError as exc:
            # A host without IPv6 still serves IPv4 (and the reverse); say so rather than fail.
            print(f"!! cannot listen on {host}:{port}: {exc}", file=sys.stderr)
    if not sockets:
        raise SystemExit(f"no address could be bound on port {port}")
    # Prometheus multiprocess mode for the workers' request metrics (security.metrics): set before gunicorn
    # forks them, so each writes its counts where a scrape of any of them adds them all up.
    from django.conf import settings

    from shuzheng.security import metrics

    metrics.prepare_multiprocess_dir(settings.HOME)
    job_worker = None
    if with_worker:
        job_worker = subprocess.Popen([sys.executable, "-m", "shuzheng", "worker"])

    def stop_worker(*_args):
        if job_worker and job_worker.poll() is None:
            job_worker.send_signal(signal.SIGTERM)
            try:
                job_worker.wait(10)
            except subprocess.TimeoutExpired:
                job_worker.kill()

    for sock in sockets:
        name = sock.getsockname()
        shown = f"[{name[0]}]" if sock.family == socket.AF_INET6 else name[0]
        print(f"Shuzheng listening on http://{shown}:{name[1]}/", flush=True)
    if {"0.0.0.0", "::"} & set(hosts):
        print(f"Open http://localhost:{port}/ in a browser.", flush=True)
    options = {
        "bind": [f"fd://{s.fileno()}" for s in sockets],
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 120,
        "graceful_timeout": 20,
        "accesslog": "-",
        "access_log_format": '%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
        "forwarded_allow_ips": os.environ.get("SHUZHENG_FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
        "on_exit": lambda _arbiter: stop_worker(),
        "child_exit": lambda _arbiter, worker: metrics.worker_exited(worker.pid),
        "proc_name": "shuzheng",
        # gunicorn's control socket lives in $HOME, shared by every instance of the user: not used here.
        "control_socket_disable": True,
    }
    try:
        _Gunicorn(options).run()
    finally:
        stop_worker()
