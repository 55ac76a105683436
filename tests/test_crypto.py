from shuzheng.core.crypto import _CryptographySM3, new_sm3, sm3, sm3_hex

# GB/T 32905-2016 example 1: SM3("abc").
ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def test_sm3_standard_vector_and_both_implementations_agree():
    assert sm3_hex(b"abc") == sm3(b"abc").hex() == ABC
    fallback = _CryptographySM3()
    fallback.update(b"abc")
    assert fallback.hexdigest() == ABC
    h = new_sm3()
    h.update(b"a")
    h.update(b"bc")
    assert h.hexdigest() == ABC
