"""``python -m services.complaints``: the HTTP API and the stream worker in one process."""

from services.complaints.bootstrap import create_app
from services.complaints.settings import ComplaintsSettings
from shared.serve import serve

serve(ComplaintsSettings(), create_app)
