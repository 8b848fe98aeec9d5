"""Reading upload forms: pure functions."""

from __future__ import annotations

from pacsnode.node.uploads import form_data_boundary, form_data_files


def test_the_boundary_of_a_form() -> None:
    assert form_data_boundary("multipart/form-data; boundary=abc") == "abc"
    assert form_data_boundary('multipart/form-data ;  boundary = "x y"') == "x"
    assert form_data_boundary("application/dicom") is None
    assert form_data_boundary("multipart/form-data") is None


def test_the_files_of_a_form() -> None:
    body = b"preamble--B\r\nA: 1\r\n\r\none\r\n--B\r\n\r\ntwo\r\n--B--\r\n"
    assert form_data_files(body, "B") == [b"one", b"two"]
    assert form_data_files(b"nothing here", "B") == []
