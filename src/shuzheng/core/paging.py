"""The API's limit/offset paging: at most 500 items a page, and an offset the databases can take (SQLite
refuses offsets beyond a 64-bit integer with an error; a larger one is a 422 naming `offset`)."""

from ninja import Field, Schema
from ninja.pagination import LimitOffsetPagination

MAX_OFFSET = 10**12


class Paging(LimitOffsetPagination):
    class Input(Schema):
        limit: int = Field(100, ge=1, le=500)
        offset: int = Field(0, ge=0, le=MAX_OFFSET)
