"""Analytics: live KPIs, RFM segments, churn risk, satisfaction and the dashboard."""
