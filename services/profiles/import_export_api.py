"""HTTP API of the CSV import and the export of every profile (CSV or JSON).

Staff and services only. An import writes its valid rows, each whole with its events, and
reports the others by row number; an export is importable as is. The app takes this router
before the customers' one: `/customers/export` is not the id of a customer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import StrEnum

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from services.profiles import handlers
from services.profiles.api import CustomerPublic, ProfilesDep, StaffOrService
from services.profiles.import_export import CsvError, header_for, read_rows, to_row, write_csv
from shared.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType


class RowProblem(BaseModel):
    row: int = Field(description="row number as a spreadsheet shows it (the header is row 1)")
    reason: str


class ImportResult(BaseModel):
    dry_run: bool
    created: int
    updated: int
    unchanged: int
    failed: int
    created_ids: list[str]
    updated_ids: list[str]
    errors: list[RowProblem]


MAX_IMPORT_BYTES = 5 * 1024 * 1024

router = APIRouter(prefix="/api/v1", tags=["customers"])


@router.post(
    "/customers/import",
    openapi_extra={
        "requestBody": {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
            },
            "required": True,
        }
    },
    responses={413: {"description": "the file is larger than 5 MB"}},
)
async def import_customers(
    request: Request,
    profiles: ProfilesDep,
    _: StaffOrService,
    dry_run: bool = False,
) -> ImportResult:
    """Create or update profiles from a CSV file (the columns of the CSV export).

    Valid rows are written, each whole with its events; invalid rows are reported with
    their row number and reason and not written at all. ``dry_run`` only checks.
    """
    text = await _csv_body(request)
    try:
        report = await handlers.import_customers(profiles, read_rows(text), dry_run=dry_run)
    except CsvError as error:
        raise InvalidInput(str(error)) from None
    return ImportResult(
        dry_run=dry_run,
        created=len(report.created),
        updated=len(report.updated),
        unchanged=report.unchanged,
        failed=len(report.errors),
        created_ids=report.created,
        updated_ids=report.updated,
        errors=[RowProblem(row=error.number, reason=error.reason) for error in report.errors],
    )


async def _csv_body(request: Request) -> str:
    content_type = request.headers.get("content-type", "")
    declared = int(request.headers.get("content-length") or 0)
    if declared > MAX_IMPORT_BYTES:
        raise PayloadTooLarge(f"the import is {declared} bytes; at most {MAX_IMPORT_BYTES}")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidInput("send the CSV as the form field `file`")
        raw = await upload.read(MAX_IMPORT_BYTES + 1)
    elif content_type.startswith(("text/csv", "text/plain", "application/csv")):
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_IMPORT_BYTES:
                break
    else:
        raise UnsupportedMediaType("send text/csv, or multipart/form-data with a `file` field")
    if len(raw) > MAX_IMPORT_BYTES:
        raise PayloadTooLarge(f"the import is larger than {MAX_IMPORT_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the CSV must be UTF-8 encoded") from None


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


@router.get(
    "/customers/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/json": {}}}},
)
async def export_customers(
    profiles: ProfilesDep, _: StaffOrService, format: ExportFormat = ExportFormat.CSV
) -> StreamingResponse:
    """Every live profile, as CSV (importable as is) or as a JSON array."""
    customers = [c async for c in handlers.all_customers(profiles)]
    if format is ExportFormat.JSON:
        body = (CustomerPublic.of(c).model_dump_json() for c in customers)
        chunks: Iterable[str] = _json_array(body)
        media_type = "application/json"
    else:
        chunks = [write_csv(header_for(customers), (to_row(c) for c in customers))]
        media_type = "text/csv; charset=utf-8"
    return StreamingResponse(
        iter(chunks),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="customers.{format.value}"'},
    )


def _json_array(items: Iterable[str]) -> Iterator[str]:
    yield "["
    for index, item in enumerate(items):
        yield ("," if index else "") + item
    yield "]"
