"""What the harvesting tests share: a real HTTP server whose answers a test sets (good feeds and hostile ones),
hand-written DCAT documents, and running service code inside a live instance's own environment."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TTL = "text/turtle; charset=utf-8"
PREFIXES = """@prefix dcat: <http://www.w3.org/ns/dcat#> . @prefix dct: <http://purl.org/dc/terms/> .
@prefix hydra: <http://www.w3.org/ns/hydra/core#> . @prefix sz: <https://shuzheng.org/ns/catalog#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
"""


class Answer:
    """What the server sends for one path: status, headers, body (bytes, or a callable giving chunks), and
    how long to wait first."""

    def __init__(self, body=b"", status: int = 200, content_type: str = TTL, delay: float = 0, headers=None):
        self.body, self.status, self.content_type, self.delay = body, status, content_type, delay
        self.headers = headers or {}


class FeedServer:
    def __init__(self):
        self.answers: dict[str, Answer] = {}
        self.requests: list[tuple[str, dict]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append((self.path, dict(self.headers)))
                answer = owner.answers.get(self.path) or owner.answers.get(self.path.split("?")[0])
                if answer is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                time.sleep(answer.delay)
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                for k, v in answer.headers.items():
                    self.send_header(k, v)
                try:
                    if callable(answer.body):
                        self.end_headers()
                        for chunk in answer.body():
                            self.wfile.write(chunk)
                    else:
                        self.send_header("Content-Length", str(len(answer.body)))
                        self.end_headers()
                        self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the harvester stopped reading: what a limit does

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, path: str, body="", **kwargs) -> str:
        self.answers[path] = Answer(body.encode() if isinstance(body, str) else body, **kwargs)
        return self.url + path

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def dataset(ident: str, title: str, *, access: str = "PUBLIC", items: tuple = ("机构名称", "统计年度"),
            landing: str = "", extra: str = "", uri: str = "") -> str:
    """A DCAT dataset in Turtle, with the catalog guide's data items (sz:item) the way Shuzheng writes them."""
    cells = " , ".join(f'[ sz:name "{n}" ; sz:dataType "string" ; sz:position {i} ]' for i, n in enumerate(items))
    page = f"dcat:landingPage <{landing}> ;" if landing else ""
    return f"""<https://node.example.gov.cn/dataset/{uri or ident}> a dcat:Dataset ;
  dct:identifier "{ident}" ; dct:title "{title}"@zh ; dct:description "{title}的说明。"@zh ;
  dct:accessRights <http://publications.europa.eu/resource/authority/access-right/{access}> ;
  dct:accrualPeriodicity <http://publications.europa.eu/resource/authority/frequency/MONTHLY> ;
  dcat:keyword "司法"@zh ; {page} {extra}
  dcat:distribution [ a dcat:Distribution ; dcat:accessURL <https://node.example.gov.cn/api/{ident}> ] ;
  {"sz:item " + cells + " ;" if cells else ""}
  dct:modified "2026-11-01T08:00:00+08:00"^^xsd:dateTime .
"""


def document(*datasets: str, next_page: str = "", view: str = "https://node.example.gov.cn/catalog.ttl") -> str:
    paging = f"<{view}> a hydra:PartialCollectionView ; hydra:next <{next_page}> .\n" if next_page else ""
    return PREFIXES + "".join(datasets) + paging


def run_python(platform, code: str) -> str:
    """Runs `code` with Django set up in a live instance's environment (its home and database): how a test
    changes the other platform's catalog through that platform's own services."""
    prelude = ("import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'shuzheng.settings'; django.setup()\n"
               "from shuzheng.org.services import Actor\n")
    done = subprocess.run([sys.executable, "-c", prelude + code], env=platform.env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()
