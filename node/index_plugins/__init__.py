"""Index plugins (the ``pacsnode.index`` kind): what answers a query on an attribute.

:mod:`.contract` says what a plugin does; :mod:`.maintags` is the built-in one over the
LMDB index's main tags, and :mod:`pacsnode.node.search.plugin` the search index over every
attribute. :mod:`.planning` decides, purely, which plugin a query goes to and how its
answers are checked; :mod:`.finder` runs that plan against the node; :mod:`.loading`
builds the configured plugins through :mod:`pacsnode.node.plugins`.
"""
