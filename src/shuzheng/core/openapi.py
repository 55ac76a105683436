"""OpenAPI documentation of the error answers (RFC 9457 problem+json, written by api.py's handlers)."""

PROBLEM_SCHEMA = {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
    "detail": {"type": "string"},
    "errors": {"type": "array", "items": {"type": "object", "required": ["field", "message"], "properties": {
        "field": {"type": "string"}, "message": {"type": "string"}}}}}}


def problem_responses(why: dict[int, str], *statuses: int) -> dict:
    """`openapi_extra` for an operation answering `statuses` as problems, each described by `why`."""
    return {"responses": {str(s): {"description": why[s], "content": {"application/problem+json": {
        "schema": PROBLEM_SCHEMA}}} for s in statuses}}
