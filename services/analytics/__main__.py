"""``python -m services.analytics``: the HTTP API and the stream worker in one process."""

from services.analytics.bootstrap import create_app
from services.analytics.settings import AnalyticsSettings
from shared.serve import serve

serve(AnalyticsSettings(), create_app)
