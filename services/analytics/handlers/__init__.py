"""Analytics use cases: project events into read models, keep each customer's insight, and
announce segment and churn-risk changes (through the outbox, only on change).

Events are applied a batch at a time, inside the consumer's unit of work (with the event
ids recorded), so a redelivered event changes nothing. The routes' ``load`` steps say what
the batch's events will ask for and the first handler reads it all at once
(``services.analytics.batch``); each handler then applies its event in memory, seeing what
earlier events of the batch did. Once the batch is applied, each customer it touched has
its summary rebuilt and judged once (:func:`judge_touched`), and every change is written
with one bulk write per collection. The periodic :class:`Recomputer` judges everyone
again, because overdue-ness and the population's quintiles move with time, and stores
what changed in bulk too.

Modules: ``context`` (the :class:`Analytics` context), ``customers``, ``purchases``,
``complaints`` and ``notifications`` (the event handlers, by topic), ``judging`` (judging
a customer, and the batch's ``after_batch`` step), ``recompute`` (judging everyone, the
:class:`Recomputer`) and ``routing`` (all the routes, in order).
"""
