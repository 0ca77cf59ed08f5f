"""Strings Django itself translates that the console's Chinese catalogue overrides (LOCALE_PATHS win):
Django's zh_Hans catalogue keeps the ASCII colon as the form label suffix and says 你 in the password
rules; the console says 您 and uses full-width punctuation. makemessages finds them here."""

from django.utils.translation import gettext_noop, ngettext_lazy

FORM_LABEL_SUFFIX = gettext_noop(":")
PASSWORD_RULES = [
    gettext_noop("Your old password was entered incorrectly. Please enter it again."),
    ngettext_lazy(
        "Your password must contain at least %(min_length)d character.",
        "Your password must contain at least %(min_length)d characters.",
        "min_length",
    ),
    gettext_noop("Your password can’t be too similar to your other personal information."),
    gettext_noop("Your password can’t be a commonly used password."),
    gettext_noop("Your password can’t be entirely numeric."),
]
