import os

from django.core.wsgi import get_wsgi_application

from ops.artifacts import refuse_unsafe_loading

# The web process never loads a pickle, whatever a project allows: workers do.
refuse_unsafe_loading("the web process")

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()
