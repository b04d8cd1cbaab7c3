"""Serve Plotly.js from the installed plotly package (the machine may have no internet)."""

from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_DIR = Path(plotly.__file__).parent / "package_data"


class PlotlyFinder(BaseFinder):
    prefix = "vendor/plotly"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=str(PLOTLY_DIR))
        self.storage.prefix = self.prefix

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        if path == f"{self.prefix}/plotly.min.js":
            found = str(PLOTLY_DIR / "plotly.min.js")
            return [found] if find_all else found
        return [] if find_all else None

    def list(self, ignore_patterns):
        yield "plotly.min.js", self.storage
