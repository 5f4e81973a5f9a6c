"""The plugins that ship with tsmtp, registered in the ``tsmtp.plugins`` entry-point group.

They are found and loaded like any installed plugin package and use only the public ``tsmtp``
API, so each is also an example of a plugin written against it.
"""
