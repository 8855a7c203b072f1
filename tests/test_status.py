"""The status vocabulary (dfdetect.status): names, numbers and HTTP codes read both ways."""

import grpc

from dfdetect.status import CODES, HTTP_STATUS, status_for_http


def test_names_and_numbers_are_grpcs():
    assert CODES == {code.name: code.value[0] for code in grpc.StatusCode}
    assert set(HTTP_STATUS) == set(CODES)


def test_an_http_answer_is_read_as_a_status_of_that_http_code():
    for name, http in HTTP_STATUS.items():
        if http in (502, 503, 413, 405):
            continue  # read as what proxies mean by them (below)
        assert HTTP_STATUS[status_for_http(http)] == http, name
    assert status_for_http(400) == "INVALID_ARGUMENT" and status_for_http(500) == "INTERNAL"
    assert status_for_http(503) == status_for_http(502) == "UNAVAILABLE"
    assert status_for_http(413) == "RESOURCE_EXHAUSTED" and status_for_http(405) == "UNIMPLEMENTED"
    assert status_for_http(418) == "INVALID_ARGUMENT" and status_for_http(599) == "INTERNAL"
