"""Plain-Python operations code: artifacts, profiles, storage, backends. No Django here."""
