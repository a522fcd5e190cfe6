"""``python -m services.notifications``: the HTTP API and the stream worker in one process."""

from services.notifications.bootstrap import create_app
from services.notifications.settings import NotificationsSettings
from shared.serve import serve

serve(NotificationsSettings(), create_app)
