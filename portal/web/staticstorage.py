"""Static files under content-hashed names, compressed (gzip and brotli), from collectstatic."""

import os

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's manifest storage, strict once collectstatic has written the manifest (a
    template naming a file that was not collected fails loudly). Before that (a checkout's
    runserver, the tests) pages link the plain names, which WhiteNoise serves from the
    finders (``WHITENOISE_USE_FINDERS`` in the settings).

    collectstatic compresses only what changed since it last ran: brotli at its best ratio
    takes about a minute over every file, and ``make demo`` runs collectstatic each time."""

    def stored_name(self, name):
        if not self.hashed_files:
            return name
        return super().stored_name(name)

    def compress_files(self, paths):
        return super().compress_files([name for name in paths if self._uncompressed(name)])

    def _uncompressed(self, name) -> bool:
        path = self.path(name)
        try:
            changed = os.path.getmtime(path)
            return not all(os.path.getmtime(path + suffix) >= changed
                           for suffix in (".gz", ".br"))
        except OSError:  # no compressed copy yet
            return True
