"""The ingestion path, from a request body to a committed event.

``privacy`` minimises (the one place), ``events`` makes the event the writer
applies, ``writer`` queues it (per client, ``fair_queue``) and group-commits,
``writer_process`` owns the write connection, ``commit`` runs one batch in one
transaction, ``apply`` plans it (``plan``, ``checkout``), logs it (``eventlog``)
and writes it with the statements of ``statements``.
"""
