"""A dataset's file, downloaded from its page by anyone who may read the page."""

from django.contrib.auth.decorators import login_required
from django.http import FileResponse
from django.shortcuts import get_object_or_404

from ops.exceptions import PermanentError
from portal.errors import NotFound
from portal.registry import queries
from portal.registry.choices import DatasetFormat
from portal.registry.storage import get_store

CONTENT_TYPES = {DatasetFormat.CSV: "text/csv",
                 DatasetFormat.PARQUET: "application/vnd.apache.parquet"}


@login_required
def dataset_download(request, pk):
    """The file exactly as uploaded, streamed, named after the dataset (``train.csv``).
    Not audited: reading is not (neither are artifact downloads); its sha256 is sent so the
    reader can check what arrived."""
    dataset = get_object_or_404(queries.datasets_for(request.user).defer("columns", "profile"),
                                pk=pk)
    try:
        handle = get_store().open(dataset.uri)
    except PermanentError as e:
        raise NotFound(f"the file of dataset {dataset.name} is no longer in the store",
                       code="file_missing") from e
    response = FileResponse(handle, as_attachment=True,
                            content_type=CONTENT_TYPES.get(dataset.format,
                                                           "application/octet-stream"),
                            filename=f"{dataset.name}.{dataset.format}")
    response["X-Checksum-SHA256"] = dataset.sha256
    return response
