"""Which role a REST request needs: one table, read from the top, first match wins.

Reading (GET, HEAD) needs ``read-only``, and so do the POSTs that only read (queries,
archive and media creation, MD5 checks). Storing, annotating, sending to configured
modalities and peers, and web plugins' writes (``/plugins/...``) need ``read-write``.
Anything else that changes the node (deleting, modalities, peers, settings, and any
method or path the table does not name) needs ``admin``: a route added later is closed
until it is listed here.
"""

from __future__ import annotations

import re

from pacsnode.node.settings import Role

_LEVEL = r"(patients|studies|series|instances)"
_ID = r"[^/]+"
_READ, _WRITE, _ADMIN = Role.READ_ONLY, Role.READ_WRITE, Role.ADMIN

#: (methods, path pattern, role needed); paths as normalised (no empty parts, no trailing /);
#: ``{dicomweb}`` stands for the DICOMweb root.
_TABLE: tuple[tuple[frozenset[str], str, Role], ...] = tuple(
    (frozenset(methods.split()), pattern, role)
    for methods, pattern, role in (
        ("GET HEAD OPTIONS", r"/.*", _READ),
        # Queries and reading tools that POST their question.
        ("POST", r"/tools/(find|search|lookup|count-resources|bulk-content)", _READ),
        ("POST", rf"/{_LEVEL}/{_ID}/(archive|media)", _READ),
        ("POST", r"/tools/create-(archive|media|media-extended)", _READ),
        ("POST", rf"/{_LEVEL}/{_ID}/attachments/{_ID}/verify-md5", _READ),
        ("POST", rf"/modalities/{_ID}/(query|echo)", _READ),
        ("POST", rf"/queries/{_ID}/answers/{_ID}/query-(studies|series|instances)", _READ),
        ("DELETE", rf"/queries/{_ID}", _READ),  # a query's answers, not stored data
        # Storing and annotating.
        ("POST", r"/instances", _WRITE),
        ("POST", r"{dicomweb}/studies(/[^/]+)?", _WRITE),
        ("PUT DELETE", rf"/{_LEVEL}/{_ID}/(metadata|attachments)/{_ID}", _WRITE),
        ("POST", rf"/{_LEVEL}/{_ID}/attachments/{_ID}/(compress|uncompress)", _WRITE),
        ("PUT", rf"/patients/{_ID}/protected", _WRITE),
        # Sending to and retrieving from configured modalities and peers; jobs.
        ("POST", rf"/modalities/{_ID}/(store|store-straight|move|get)", _WRITE),
        ("POST", rf"/queries/{_ID}(/answers/{_ID})?/retrieve", _WRITE),
        ("POST", rf"/peers/{_ID}/(store|store-straight|sync)", _WRITE),
        ("POST", rf"/jobs/{_ID}/(cancel|pause|resume|resubmit)", _WRITE),
        ("POST", r"/tools/dicom-echo", _WRITE),  # reaches any host:port it is given
        # The web UI's forms (node/ui): the same actions as their REST counterparts.
        ("POST", r"/ui/upload", _WRITE),
        ("POST", rf"/ui/studies/{_ID}/(protect|send)", _WRITE),
        ("POST", rf"/ui/(peers/{_ID}/sync|jobs/{_ID}/cancel)", _WRITE),
        # Not listed, so admin: /ui/studies/{id}/delete.
        # Web plugins (node/rest/web_plugins.py): they read the node only, so anything
        # they do besides reading is theirs, and needs what storing needs.
        ("POST PUT PATCH DELETE", rf"/plugins/{_ID}(/.*)?", _WRITE),
    )
)


def required_role(method: str, path: str, dicomweb_root: str = "/dicom-web") -> Role:
    """The role a request needs; ``admin`` for anything the table does not name."""
    method = "GET" if method.upper() == "HEAD" else method.upper()
    path = "/" + "/".join(part for part in path.split("/") if part)
    for methods, pattern, role in _TABLE:
        if method in methods and re.fullmatch(
            pattern.replace("{dicomweb}", re.escape(dicomweb_root)), path
        ):
            return role
    return Role.ADMIN


def strictest(roles: list[Role]) -> Role:
    """The most privileged of several roles (a request that may mean several methods)."""
    order = list(Role)
    return max(roles, key=order.index)
