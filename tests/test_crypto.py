"""Stored X tokens: key rotation with FIELD_ENCRYPTION_KEYS, and a token no key decrypts (issue 11, point 10)."""

from __future__ import annotations

import base64
import hashlib
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.utils import timezone

from contacts.models import Message
from contacts.services.contacts import XProfile
from contacts.services.inbound import dm_record
from mktx.accounts.crypto import UndecryptableToken, decrypt, encrypt
from mktx.accounts.models import Account, AccountStatus
from mktx.accounts.services import UNREADABLE_CREDENTIALS
from tests.campaign_helpers import connect

pytestmark = pytest.mark.django_db

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_it_encrypts_with_the_newest_key_and_decrypts_with_any(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    under_old = encrypt("token-1")

    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    assert decrypt(under_old) == "token-1"
    under_new = encrypt("token-2")
    assert Fernet(NEW.encode()).decrypt(under_new.encode()) == b"token-2"


def test_a_token_no_key_decrypts_raises_instead_of_reading_as_empty(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    stored = encrypt("token")
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    with pytest.raises(UndecryptableToken):
        decrypt(stored)
    with pytest.raises(UndecryptableToken):
        decrypt("not a fernet token")
    assert decrypt("") == ""  # nothing stored (a disconnected account) is not an error


def test_a_single_passphrase_key_still_decrypts_what_it_encrypted_before(settings):
    # FIELD_ENCRYPTION_KEY could be any string: it was hashed into a Fernet key, and still is
    passphrase = "an operator's long passphrase, not a Fernet key"
    legacy = Fernet(base64.urlsafe_b64encode(hashlib.sha256(passphrase.encode()).digest()))
    stored = legacy.encrypt(b"token").decode()
    settings.FIELD_ENCRYPTION_KEYS = [NEW, passphrase]
    assert decrypt(stored) == "token"


@pytest.fixture
def shop(api, sandbox, settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    return connect(api, sandbox)


def _conversation(sandbox, shop):
    customer = sandbox.user("customer_john", "John Doe")
    message = dm_record(
        account=shop["account"],
        x_event_id="900000000000000001",
        sender_id=customer["id"],
        recipient_id=shop["id"],
        text="Hi",
        sent_at=timezone.now(),
        profiles={customer["id"]: XProfile(id=customer["id"], username="customer_john", name="John Doe")},
    )
    assert message is not None
    return message.conversation


def test_a_reply_from_an_account_whose_tokens_cannot_be_decrypted_marks_it_error_and_sends_nothing(
    api, sandbox, shop, settings
):
    # given the key that encrypted the account's tokens was dropped
    conversation = _conversation(sandbox, shop)
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    stored = Message.objects.count()

    # when an agent replies
    response = api.post(
        f"/api/v1/mkt-x/conversations/{conversation.id}/messages", {"content": "Your order shipped"}, format="json"
    )

    # then nothing reaches X, nothing is stored, and the account says why it stopped
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == "accountId"
    assert sandbox.dms(senderId=shop["id"]) == []
    assert Message.objects.count() == stored
    account = Account.objects.get(pk=shop["account"].pk)
    assert account.status == AccountStatus.ERROR
    assert account.status_reason == UNREADABLE_CREDENTIALS
    assert "reconnect" in api.get(f"/api/v1/mkt-x/accounts/{account.pk}").json()["data"]["statusReason"]

    # and connecting it again (its tokens now under the current key) lets it send
    tokens = {k: shop[k] for k in ("oauthToken", "oauthTokenSecret")}
    assert api.post("/api/v1/mkt-x/accounts", tokens, format="json").status_code == 200
    account.refresh_from_db()
    assert (account.status, account.status_reason) == (AccountStatus.ACTIVE, "")
    again = api.post(f"/api/v1/mkt-x/conversations/{conversation.id}/messages", {"content": "Shipped"}, format="json")
    assert again.status_code == 200, again.json()
    assert len(sandbox.dms(senderId=shop["id"])) == 1


def test_an_account_whose_tokens_cannot_be_decrypted_can_still_be_disconnected(api, sandbox, shop, settings):
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    response = api.delete(f"/api/v1/mkt-x/accounts/{shop['account'].pk}")
    assert response.status_code in (200, 204), response.content
    account = Account.objects.get(pk=shop["account"].pk)
    assert account.status == AccountStatus.INACTIVE
    assert account.oauth_token_encrypted == ""


def test_rotation_re_encrypts_every_stored_token_with_the_newest_key(api, sandbox, shop, settings):
    # given a second account whose tokens no configured key decrypts
    lost = Account.objects.create(
        merchant=shop["account"].merchant,
        twitter_user_id="12345",
        username="lost",
        oauth_token_encrypted=Fernet(Fernet.generate_key()).encrypt(b"t").decode(),
        oauth_token_secret_encrypted=Fernet(Fernet.generate_key()).encrypt(b"s").decode(),
    )
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]

    # when the operator rotates
    out = StringIO()
    call_command("rotate_field_encryption", stdout=out)

    # then the old key can go: the newest alone reads every readable token
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    account = Account.objects.get(pk=shop["account"].pk)
    assert decrypt(account.oauth_token_encrypted) == shop["oauthToken"]
    assert decrypt(account.oauth_token_secret_encrypted) == shop["oauthTokenSecret"]
    assert account.status == AccountStatus.ACTIVE
    lost.refresh_from_db()
    assert lost.status == AccountStatus.ERROR
    assert lost.status_reason == UNREADABLE_CREDENTIALS
    assert "1 rotated" in out.getvalue()
    assert "1 unreadable" in out.getvalue()
