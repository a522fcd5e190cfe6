"""``python -m services.profiles``: the HTTP API and the stream worker in one process."""

from services.profiles.bootstrap import create_app
from services.profiles.settings import ProfilesSettings
from shared.serve import serve

serve(ProfilesSettings(), create_app)
