"""Catalog export benchmark: the government catalog as one DCAT-AP page, against the same resources through
CKAN's package_search (the baseline, measured in the same run), and the SHACL validation of the result.

    .venv/bin/python bench/dcat.py [--repeat 3]

Set-up (not timed): a fresh SHUZHENG_HOME (SQLite) with the demo's organizations and catalog (`demo load
--catalog-only`: about 280 published resources).

Measured (each the best of `repeat` runs):
  - build_s: dcat.catalog_page for every published resource (page_size 1000) as the platform's operator sees it
  - turtle_s, rdfxml_s, jsonld_s: serializing that graph
  - ckan_s: ckan.package_search of the same resources (rows 1000, include_private), the baseline
  - export_vs_ckan: (build_s + turtle_s) / ckan_s
  - shacl_s: pyshacl validation of the graph against tests/data/dcat-ap-3.0.0-SHACL.ttl (violations must be 0)

Prints one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[bench/dcat] {msg}", file=sys.stderr, flush=True)


def best(repeat: int, fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="bench-dcat-")
    os.environ["SHUZHENG_HOME"] = home
    os.environ.pop("DATABASE_URL", None)  # SQLite in the throwaway home: never a real deployment's database
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shuzheng.settings")
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from shuzheng.demo.loader import load_demo

        load_demo(data=False)
        from pyshacl import validate
        from rdflib import Graph

        from shuzheng.catalog import ckan, dcat
        from shuzheng.org.services import Actor

        actor, base = Actor.cli(), "https://sjgx.dingzhou.gov.cn"
        build_s, page = best(args.repeat, lambda: dcat.catalog_page(actor, base, page_size=1000))
        log(f"{page.total} datasets, {len(page.graph)} triples")
        figures = {"datasets": page.total, "triples": len(page.graph), "build_s": round(build_s, 3)}
        for suffix, name in (("ttl", "turtle_s"), ("rdf", "rdfxml_s"), ("jsonld", "jsonld_s")):
            figures[name] = round(best(args.repeat, lambda: dcat.serialize(page.graph, suffix))[0], 3)
        ckan_s, found = best(args.repeat, lambda: ckan.call(actor, "package_search", {"rows": 1000, "include_private": True}, base))
        assert found["count"] == page.total, (found["count"], page.total)
        figures["ckan_s"] = round(ckan_s, 3)
        figures["export_vs_ckan"] = round((build_s + figures["turtle_s"]) / ckan_s, 2)
        shapes = Graph().parse(ROOT / "tests" / "data" / "dcat-ap-3.0.0-SHACL.ttl")
        start = time.perf_counter()
        conforms, _results, _text = validate(page.graph, shacl_graph=shapes, inference="none", advanced=True)
        figures["shacl_s"] = round(time.perf_counter() - start, 2)
        figures["conforms"] = conforms
        print(json.dumps(figures))
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
