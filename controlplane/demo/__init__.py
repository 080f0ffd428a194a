"""The demo fleet: simulated services that use the real `breakers` library and agent
against in-process dependencies whose failure rate follows a schedule, a webhook
receiver that shows the alerts they cause, and ``manage.py demo_setup``.

`scenario` and the two process modules (`service`, `receiver`) use the standard
library and `breakers` only; the management command is the one part that needs Django.
"""
