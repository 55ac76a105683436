"""Catalog search: Chinese full text (jieba) with facets.

Each process keeps an inverted index in memory, built from SearchDocument rows: for every token the
sorted positions of the resources that contain it (numpy arrays), and for every facet one small integer
per resource. A query intersects posting lists, applies the visibility and facet masks, and counts facets
with one `bincount` each, so its cost hardly depends on the number of items and keywords.

Freshness: every catalog change writes its SearchDocument and a new random generation token in the same
transaction; a search that sees a different token rebuilds the index first. Random tokens (not a counter)
mean a rolled-back change can never leave a process trusting an index built from it.
"""

from __future__ import annotations

import gc
import logging
import re
import secrets
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import jieba
import numpy as np

jieba.setLogLevel(logging.WARNING)
_jieba_ready = threading.Lock()
_jieba_loaded = False

FACETS = ("provider", "kind", "category", "sharing_type", "open_type", "update_cycle", "format", "level",
          "mounted", "status")
SORTS = ("relevance", "newest", "name", "code")
CODE = re.compile(r"^\d{9}[/-]\d{6}$")


def _segmenter():
    global _jieba_loaded
    if not _jieba_loaded:
        with _jieba_ready:
            if not _jieba_loaded:
                jieba.initialize()
                # Government terms jieba's general dictionary would split (公民身份号码 -> 公民/身份/号码).
                words = Path(__file__).resolve().parent / "data" / "words.txt"
                if words.exists():
                    jieba.load_userdict(str(words))
                _jieba_loaded = True
    return jieba


def _keep(token: str) -> bool:
    token = token.strip()
    return bool(token) and any(unicodedata.category(c)[0] in "LN" for c in token)


def index_tokens(text: str) -> list[str]:
    """Tokens a document is found by: jieba's search mode (words and the shorter words inside them)."""
    return [t.strip() for t in _segmenter().cut_for_search(text.lower()) if _keep(t)]


def query_tokens(text: str) -> list[str]:
    """Tokens of a query: jieba's precise mode; every one of them must match."""
    text = text.strip().lower()
    if CODE.match(text):
        return [text.replace("-", "/")]
    return list(dict.fromkeys(t.strip() for t in _segmenter().cut(text) if _keep(t)))


# --------------------------------------------------------------------------------------------------
# Writing documents (called by catalog.services inside their transactions)
# --------------------------------------------------------------------------------------------------


def index(resource) -> None:
    """Rewrites the resource's document from the version people see first, and marks the index stale."""
    from shuzheng.catalog.models import SearchDocument

    version = resource.current
    doc = document(resource, version, list(version.items.values_list("name", flat=True)))
    SearchDocument.objects.update_or_create(resource=resource, defaults={
        "name_tokens": doc.name_tokens, "tokens": doc.tokens, "sort_key": doc.sort_key})
    touch()


def document(resource, version, item_names: list[str]):
    """The (unsaved) SearchDocument of `resource` described by `version`: name tokens rank results, all
    tokens find them; the sort key numbers documents newest first."""
    from shuzheng.catalog.models import SearchDocument

    name_tokens = index_tokens(version.name)
    body = " ".join([version.summary, " ".join(version.keywords), " ".join(item_names), resource.provider.name,
                     resource.provider.short_name, resource.category.name])
    tokens = sorted(set(name_tokens + index_tokens(body) + [resource.code]))
    stamp = (version.published_at or version.updated_at or version.created_at).strftime("%Y%m%d%H%M%S")
    return SearchDocument(resource=resource, name_tokens=" ".join(sorted(set(name_tokens))), tokens=" ".join(tokens),
                          sort_key=f"{stamp}{resource.code}")


def touch() -> None:
    from shuzheng.catalog.models import SearchGeneration

    # The row is created by migration 0002.
    SearchGeneration.objects.filter(id=1).update(value=secrets.randbits(62))


# --------------------------------------------------------------------------------------------------
# The in-memory index
# --------------------------------------------------------------------------------------------------


@dataclass
class Visibility:
    """Which resources a caller may see: everything, or published ones (only the open ones for the public)
    plus the unpublished ones of `draft_orgs`."""

    everything: bool = False
    public: bool = False
    draft_orgs: frozenset = frozenset()

    def allows(self, resource) -> bool:
        if self.everything:
            return True
        if self.public:
            return resource.status == "published" and resource.published.open_type in ("open", "conditional")
        return resource.status in ("published", "deprecated") or resource.provider_id in self.draft_orgs


@dataclass
class Index:
    generation: int
    ids: list
    postings: dict
    name_postings: dict
    facets: dict  # name -> (codes array, list of values)
    provider_ids: np.ndarray
    provider_orgs: list
    name_rank: np.ndarray
    code_rank: np.ndarray
    vocabulary: list = field(default_factory=list)
    expanded: dict = field(default_factory=dict)  # token -> positions of every word containing it

    @property
    def size(self) -> int:
        return len(self.ids)


@dataclass
class Result:
    total: int
    ids: list
    facets: dict  # name -> [(value, count)], most frequent first


_index: Index | None = None
_build_lock = threading.Lock()


def current_generation() -> int:
    from shuzheng.catalog.models import SearchGeneration

    return SearchGeneration.objects.filter(id=1).values_list("value", flat=True).first() or 0


def get_index() -> Index:
    global _index
    generation = current_generation()
    if _index is not None and _index.generation == generation:
        return _index
    with _build_lock:
        if _index is None or _index.generation != generation:
            _index = build(generation)
    return _index


def build(generation: int) -> Index:
    # The build allocates millions of small objects and frees none of them: the collector only slows it.
    gc.disable()
    try:
        return _build(generation)
    finally:
        gc.enable()


def _build(generation: int) -> Index:
    from shuzheng.catalog.models import Resource, SearchDocument

    # No transaction (on SQLite it would hold the write lock for the whole read). Documents are read before
    # resources, and resources are never deleted, so every document finds its resource; a change committed
    # in between makes this index newer than its generation, and the next search rebuilds it again.
    docs = list(SearchDocument.objects.order_by("-sort_key").values_list("resource_id", "name_tokens", "tokens"))
    cols = ("id", "code", "status", "provider_id", "category__code", "mount_kind", "provider__code")
    version_cols = ("name", "sharing_type", "open_type", "update_cycle", "format", "level")
    rows = {
        r[0]: r for r in Resource.objects.values_list(
            *cols, *(f"published__{c}" for c in version_cols), *(f"pending__{c}" for c in version_cols))
    }
    ids, postings, name_postings = [], {}, {}
    facet_values = {name: [] for name in FACETS}
    provider_column, names, codes = [], [], []
    kinds = {"1": "base", "2": "thematic", "3": "department"}
    width = len(version_cols)
    for ordinal, (resource_id, name_tokens, tokens) in enumerate(docs):
        row = rows[resource_id]
        published, pending = row[7:7 + width], row[7 + width:]
        version = dict(zip(version_cols, published if published[0] is not None else pending))
        ids.append(resource_id)
        for token in tokens.split(" "):
            postings.setdefault(token, []).append(ordinal)
        for token in name_tokens.split(" "):
            name_postings.setdefault(token, []).append(ordinal)
        facet_values["provider"].append(row[6])
        facet_values["kind"].append(kinds[row[4][0]])
        facet_values["category"].append(row[4][:3])
        for name in ("sharing_type", "open_type", "update_cycle", "format", "level"):
            facet_values[name].append(version[name])
        facet_values["mounted"].append("yes" if row[5] else "no")
        facet_values["status"].append(row[2])
        provider_column.append(row[3])
        names.append(version["name"])
        codes.append(row[1])
    facets = {}
    for name, column in facet_values.items():
        values = sorted(set(column))
        position = {v: i for i, v in enumerate(values)}
        facets[name] = (np.fromiter((position[v] for v in column), dtype=np.int32, count=len(column)), values)
    provider_orgs = sorted(set(provider_column), key=str)
    org_position = {o: i for i, o in enumerate(provider_orgs)}
    return Index(
        generation=generation,
        ids=ids,
        postings={t: np.asarray(p, dtype=np.int32) for t, p in postings.items()},
        name_postings={t: np.asarray(p, dtype=np.int32) for t, p in name_postings.items()},
        facets=facets,
        provider_ids=np.fromiter((org_position[o] for o in provider_column), dtype=np.int32, count=len(ids)),
        provider_orgs=provider_orgs,
        name_rank=_rank(names),
        code_rank=_rank(codes),
        # Resource codes are found whole only; leaving them out keeps the substring scan short.
        vocabulary=sorted(t for t in postings if not CODE.match(t)),
    )


def _rank(values: list) -> np.ndarray:
    order = sorted(range(len(values)), key=values.__getitem__)
    rank = np.empty(len(values), dtype=np.int32)
    rank[order] = np.arange(len(values), dtype=np.int32)
    return rank


def _matching(idx: Index, token: str) -> np.ndarray:
    """Positions of documents with a word containing `token` (so 证 finds 营业执照 and 证照, and 户籍 finds
    户籍人口), which also covers jieba splitting a query differently from a text. Cached per index."""
    found = idx.expanded.get(token)
    if found is None:
        parts = [idx.postings[w] for w in idx.vocabulary if token in w]
        if CODE.match(token) and token in idx.postings:  # codes are not in the scanned vocabulary
            parts.append(idx.postings[token])
        found = np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int32)
        if len(idx.expanded) < 10_000:
            idx.expanded[token] = found
    return found


def _visible(idx: Index, who: Visibility) -> np.ndarray:
    if who.everything:
        return np.ones(idx.size, dtype=bool)
    status_codes, status_values = idx.facets["status"]
    allowed = ["published"] if who.public else ["published", "deprecated"]
    mask = np.isin(status_codes, [status_values.index(s) for s in allowed if s in status_values])
    if who.public:
        open_codes, open_values = idx.facets["open_type"]
        mask &= np.isin(open_codes, [open_values.index(v) for v in ("open", "conditional") if v in open_values])
    elif who.draft_orgs:
        orgs = [i for i, o in enumerate(idx.provider_orgs) if o in who.draft_orgs]
        mask |= np.isin(idx.provider_ids, orgs)
    return mask


def run(who: Visibility, q: str = "", filters: dict | None = None, sort: str = "", offset: int = 0,
        limit: int = 20) -> Result:
    """Searches the catalog. `filters` maps a facet to the values wanted (values of one facet are ORed,
    facets are ANDed). Facet counts are disjunctive: each facet is counted with every filter but its own,
    so choosing one provider still shows how many results the others would give."""
    idx = get_index()
    base = _visible(idx, who)
    tokens = query_tokens(q) if q else []
    for token in tokens:
        hit = np.zeros(idx.size, dtype=bool)
        hit[_matching(idx, token)] = True
        base &= hit
    masks = {}
    for name, wanted in (filters or {}).items():
        if name not in idx.facets or not wanted:
            continue
        codes, values = idx.facets[name]
        masks[name] = np.isin(codes, [values.index(v) for v in wanted if v in values])
    selected = base.copy()
    for mask in masks.values():
        selected &= mask
    facets = {}
    for name, (codes, values) in idx.facets.items():
        scope = selected
        if name in masks:
            scope = base.copy()
            for other, mask in masks.items():
                if other != name:
                    scope &= mask
        counts = np.bincount(codes[scope], minlength=len(values))
        facets[name] = sorted(((values[i], int(c)) for i, c in enumerate(counts) if c), key=lambda vc: -vc[1])
    positions = np.flatnonzero(selected)  # newest first: documents are numbered by their sort key
    sort = sort if sort in SORTS else ("relevance" if tokens else "newest")
    if sort == "relevance" and tokens:
        score = np.zeros(len(positions), dtype=np.int32)
        for token in tokens:
            in_name = idx.name_postings.get(token)
            if in_name is not None:
                score += np.isin(positions, in_name)
        positions = positions[np.argsort(-score, kind="stable")]
    elif sort == "name":
        positions = positions[np.argsort(idx.name_rank[positions], kind="stable")]
    elif sort == "code":
        positions = positions[np.argsort(idx.code_rank[positions], kind="stable")]
    page = positions[offset:offset + limit]
    return Result(total=int(len(positions)), ids=[idx.ids[i] for i in page], facets=facets)
