"""Complaints domain: a complaint's lifecycle, conversation and feedback.

Pure: no I/O. Every rule takes the complaint as it is and returns the complaint as it
becomes together with the event payloads announcing the change; the use cases store both
in one transaction. One module per concern, imported directly:

- ``model``: the complaint record, its parts, its states and allowed transitions
- ``query``: what a listing asks for
- ``lifecycle``: open, acknowledge, work, resolve, reopen, close
- ``conversation``: public comments and internal notes
- ``triage``: assignment, priority and category
- ``deadlines``: SLA deadlines re-planned, warnings, breaches and escalation
- ``satisfaction``: CSAT/NPS feedback
- ``erasure``: anonymising a complaint
- ``sla``: SLA policies, rules and clocks

and the customer portal's support content:

- ``language``: the portal's locales and their text direction
- ``articles``: help-centre articles
- ``community``: questions, answers, votes, acceptance, moderation and reputation
"""
