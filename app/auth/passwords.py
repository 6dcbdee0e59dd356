"""The password rules, in one place: every way a password is set (an administrator creating or
resetting an account, a user changing their own, the command line, a bulk import) goes through
``password_problem``.

The rules follow NIST SP 800-63B rather than composition rules: long enough, not the user's
own name, not one of the passwords every guessing list starts with (the Chinese favourites
included), not one character repeated, no control characters.
"""
from __future__ import annotations

import secrets
import unicodedata

from app.models.auth import username_key

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200
# A user name this short ("li") would refuse too many good passwords ("climbing") if containing
# it counted; being equal to it still does.
MIN_NAME_IN_PASSWORD = 3

# Compared case-insensitively. Shorter passwords are refused by the length rule, so only the
# common ones of at least MIN_PASSWORD_LENGTH characters are listed.
COMMON_PASSWORDS = frozenset(
    p.casefold()
    for p in """
    0000000000 00000000000 000000000000 0123456789 01234567890 1111111111 11111111111 111111111111
    1234567890 12345678900 12345678910 123456789000 1234567890a 1234567890q 0987654321 9876543210
    1234512345 1234554321 1122334455 112233445566 1212121212 123123123123 1231231234 1234123412
    123456123456 1234567899 1357924680 1472583690 147258369147 159357159357 5201314520
    52013145201314 13145201314 1314520520 5211314521 7758521521 1314woaini woaini1314 woaini123456
    woaini12345 iloveyou1314 iloveyou123 iloveyou12 88888888888 888888888888 66666666666 99999999999
    6666666666 8888888888 9999999999 a123456789 a1234567890 a12345678910 aa123456789 abc1234567
    abc123456789 abcd123456 abcd1234abcd 1234abcd1234 abcdefghij abcdefg123 a1b2c3d4e5 a1b2c3d4e5f6
    123456789a 123456789q 123456abcd qq123456789 qq1234567890 qwertyuiop qwertyuiop123 qwerty12345
    qwerty123456 qwe123456789 qweasdzxc123 123qweasdzxc qweasdzxc1 1qaz2wsx3edc 1qaz2wsx3edc4rfv
    1q2w3e4r5t 1q2w3e4r5t6y zaq12wsxcde3 zaq1xsw2cde3 q1w2e3r4t5 asdfghjkl123 asdfghjkl1 zxcvbnm123
    zxcvbnm1234 zxcvbnmasdf password123 password1234 password12 password1! passw0rd123 p@ssw0rd123
    p@ssword123 admin12345 admin123456 admin@123456 admin@12345 administrator admin1234567
    root123456 root12345678 test123456 test12345678 welcome123 welcome1234 sunshine123 dragon12345
    football123 baseball123 monkey12345 letmein123 master12345 superman123 shadow12345 michael123
    huawei12345 huawei123456 wang123456 zhang123456 li123456789 liu123456789 chen123456 yueyang123
    yueyang123456 weijianju123 weisheng123 yisheng123456 changeme123 qazwsxedc123 qazwsxedcrfv
    q123456789 1111122222 5201314521 1314521521 woaini5201314 5201314woaini iloveyou520 aini1314520
    1qaz2wsx3e q1w2e3r4t5y6 qwerty1234 asdf123456 asdfasdfasdf zxcvbnmasd qazwsx123456 abcd1234567
    abcdef123456 aaa123456789 password12345 password2024 password2025 password2026 p@ssw0rd1234
    admin888888 test1234567 user123456 guest123456 princess123 1qaz@wsx3edc 1qaz!qaz2wsx
    1234567890123 18888888888 13888888888 13800138000 123456789abc abc123abc123 li1234567890
    nihao123456 111222333444 147258369258 741852963741 7758258520
    """.split()
)

MESSAGES = {
    "short": f"密码至少{MIN_PASSWORD_LENGTH}位。",
    "long": f"密码不超过{MAX_PASSWORD_LENGTH}个字符。",
    "control": "密码不能包含控制字符或换行。",
    "repeated": "密码不能由同一个字符重复组成。",
    "username": "密码不能与用户名相同，也不能包含用户名。",
    "common": "该密码过于常见，很容易被猜中，请换一个。",
}

# no 0/O, 1/l/I: a temporary password is read off a sheet or a screen and typed by hand
_LOWER = "abcdefghjkmnpqrstuvwxyz"
_UPPER = "ABCDEFGHJKMNPQRSTUVWXYZ"
_DIGITS = "23456789"
GENERATED_LENGTH = 12


def password_problem(password: str | None, username: str | None = None) -> str | None:
    """The first rule the password breaks, as a Chinese sentence; None when it is acceptable."""
    password = password or ""
    if len(password) < MIN_PASSWORD_LENGTH:
        return MESSAGES["short"]
    if len(password) > MAX_PASSWORD_LENGTH:
        return MESSAGES["long"]
    if any(unicodedata.category(ch) == "Cc" for ch in password):
        return MESSAGES["control"]
    folded = password.casefold()
    if len(set(folded)) == 1:
        return MESSAGES["repeated"]
    name = username_key(username or "")
    if name and (folded == name or (len(name) >= MIN_NAME_IN_PASSWORD and name in folded)):
        return MESSAGES["username"]
    if folded in COMMON_PASSWORDS:
        return MESSAGES["common"]
    return None


def generate_password(username: str | None = None) -> str:
    """A random temporary password that passes the rules for ``username``: 12 letters and digits
    (about 68 bits), at least one lower-case letter, one capital and one digit."""
    alphabet = _LOWER + _UPPER + _DIGITS
    while True:
        chars = "".join(secrets.choice(alphabet) for _ in range(GENERATED_LENGTH))
        if (any(c in _LOWER for c in chars) and any(c in _UPPER for c in chars) and any(c in _DIGITS for c in chars)
                and password_problem(chars, username) is None):
            return chars
