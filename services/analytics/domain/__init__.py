"""Pure analytics: windows, KPIs, RFM scores, segments, loyalty tiers, churn risk, offers.

Nothing here does I/O. Every figure is a function of the facts it is given and of ``now``
(an injected clock), so the same events give the same figures, live or replayed.

Definitions (also in the README):

- A window is the half-open interval ``(now - length, now]`` of event time.
- Percentiles are nearest-rank: the p-th percentile of n sorted values is the value at
  rank ``ceil(p / 100 * n)`` (1-based); no interpolation.
- RFM quintile score of a value among a population of n values: ``1 +`` the number of cut
  points the value exceeds, where cut point k (1..4) is the ``ceil(k * n / 5)``-th
  smallest value. Recency ranks the last purchase time (later is better), frequency the
  number of purchases, monetary the net spend (purchases minus refunds) per currency; a
  customer buying in several currencies gets the best of its monetary scores.
  With fewer than :data:`MIN_POPULATION` buying customers quintiles say nothing, so
  recency and frequency are scored against fixed thresholds instead
  (:data:`RECENCY_DAYS`, :data:`FREQUENCY_FROM`) and monetary is the middle score 3.
- Churn risk adds points for each warning sign (see :data:`CHURN_POINTS`); the score is
  points / 100 capped at 1; high from 0.60, medium from 0.30. Overdue needs a rhythm: at
  least :data:`MIN_RHYTHM_PURCHASES` purchases and a mean interval of at least
  :data:`MIN_RHYTHM` (purchases on the same day are no rhythm).

Modules: ``figures`` (windows, buckets, metrics, helpers), ``facts``, ``kpis``,
``summaries`` (a customer's summary), ``segments`` (RFM, segments, loyalty tiers),
``insights`` (churn risk, rhythm, a customer's insight) and ``offers`` (next best offer).
"""
