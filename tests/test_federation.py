"""上联省级 with two real instances side by side on 127.0.0.1: a city (the Dingzhou demo) and a province
platform. The province harvests the city's government catalog with the key the city issued it, then follows
it incrementally: a revised resource and a deprecated one reach it, and nothing else is read again. The
city harvests the province's own catalog back as upstream resources of the province node, without taking
back the copies of its own records the province holds (no loops)."""

from __future__ import annotations

import concurrent.futures
import json

import pytest

from conftest import running_platform
from federation_helpers import run_python

ISSUE_KEY = """
from shuzheng.org import services as org
from shuzheng.org.models import Organization
actor = Actor.cli()
province = Organization.objects.get(kind="province_platform")
org.create_system(actor, {"code": "province-catalog", "name": "省平台目录汇聚", "organization": province.code})
print(org.create_api_key(actor, "province-catalog")[1])
"""

COUNT_PUBLISHED = """
from shuzheng.catalog.models import Resource
print(Resource.objects.filter(status="published").count())
"""

# Revise one open resource (a new summary) and deprecate another, through the city's catalog services.
CHANGE_AND_DELETE = """
import json
from shuzheng.catalog import services as c
from shuzheng.catalog.models import Resource
a = Actor.cli()
reviewer = Actor(label="cli:reviewer", ip="127.0.0.1", operator=True)  # four eyes: not the submitter
live = Resource.objects.filter(status="published", harvested__isnull=True).order_by("code")
changed, gone = live[0], live[1]
c.start_revision(a, changed.code)
shot = c.snapshot(changed.published)
data = {**shot["fields"], "summary": shot["fields"]["summary"] + "（省级同步测试修订）",
        "items": [{"name": n, **spec} for n, spec in shot["items"].items()]}
c.update_draft(a, changed.code, data)
c.submit(a, changed.code)
c.review(reviewer, changed.code, "approve", "同步测试")
c.publish(reviewer, changed.code)
c.deprecate(a, gone.code, "同步测试：停用")
print(json.dumps({"changed": changed.code, "gone": gone.code}))
"""

# The province's public catalog: its own open resources, and its open copies of the city's.
PUBLIC_COUNTS = """
import json
from shuzheng.catalog.models import Resource
public = Resource.objects.filter(status="published", published__open_type__in=["open", "conditional"])
print(json.dumps([public.filter(harvested__isnull=True).count(), public.filter(harvested__isnull=False).count()]))
"""

MIRRORS = """
import json
from shuzheng.harvest.models import HarvestedRecord
print(json.dumps({r.identifier: {"summary": r.resource.published.summary, "status": r.resource.status,
                                 "deleted": r.deleted_at is not None, "provider": r.resource.provider.kind}
                  for r in HarvestedRecord.objects.select_related("resource__published", "resource__provider")},
                 ensure_ascii=False))
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The city and the province, started side by side (two migrations and demo loads at once: the machine's
    two cores). Catalogs only: harvesting needs no warehouse data, and the demo's data load is most of its time."""
    starting = [running_platform(tmp_path_factory.mktemp("city"), demo="catalog"),
                running_platform(tmp_path_factory.mktemp("province"), demo="catalog",
                                 extra_env={"SHUZHENG_PLATFORM_NAME": "河北省政务数据资源目录",
                                            "SHUZHENG_HARVEST_MARGIN_S": "1"})]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(cm.__enter__) for cm in starting]
    started = [(cm, f.result()) for cm, f in zip(starting, futures) if f.exception() is None]
    try:
        if len(started) < 2:
            raise next(f.exception() for f in futures if f.exception() is not None)
        yield started[0][1], started[1][1]
    finally:
        for cm, _live in started:
            cm.__exit__(None, None, None)


def harvest(platform, *args) -> dict:
    done = platform.cli("harvest", "run", *args, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_province_follows_the_city_incrementally_and_the_city_takes_the_province_upstream(pair, tmp_path):
    city, province = pair
    key_file = tmp_path / "city.key"
    key_file.write_text(run_python(city, ISSUE_KEY))
    city_node = run_python(province, "from shuzheng.org.models import Organization\n"
                                     "print(Organization.objects.get(kind='city_government').code)")
    province.cli("harvest", "add", "定州市", "--kind", "shuzheng", "--url", city.url, "--organization", city_node,
                 "--credential-file", str(key_file))

    first = harvest(province, "定州市")
    published = int(run_python(city, COUNT_PUBLISHED))
    assert first["state"] == "succeeded" and not first["incremental"]
    assert first["created"] == first["seen"] == published and first["skipped"] == 0

    changes = json.loads(run_python(city, CHANGE_AND_DELETE))
    second = harvest(province, "定州市")
    assert second["state"] == "succeeded" and second["incremental"]
    # Only what changed since the first harvest was read: the revision and the deletion.
    assert (second["seen"], second["updated"], second["deleted"], second["created"]) == (1, 1, 1, 0)
    mirrors = json.loads(run_python(province, MIRRORS))
    assert mirrors[changes["changed"]]["summary"].endswith("（省级同步测试修订）")
    assert mirrors[changes["gone"]]["deleted"] and mirrors[changes["gone"]]["status"] == "deprecated"
    assert {m["provider"] for m in mirrors.values()} == {"city_government"}

    # The province's own catalog reaches the city as upstream resources of the province node; the copies
    # of the city's records the province holds stay out.
    province_node = run_python(city, "from shuzheng.org.models import Organization\n"
                                     "print(Organization.objects.get(kind='province_platform').code)")
    city.cli("harvest", "add", "河北省", "--kind", "shuzheng", "--url", province.url, "--organization", province_node)
    upstream = harvest(city, "河北省")
    own, relayed = json.loads(run_python(province, PUBLIC_COUNTS))
    assert upstream["state"] == "succeeded" and upstream["created"] == own > 0
    assert upstream["relayed"] == relayed > 0
    upstream_mirrors = json.loads(run_python(city, MIRRORS))
    assert {m["provider"] for m in upstream_mirrors.values()} == {"province_platform"}
    assert len(upstream_mirrors) == upstream["created"]
