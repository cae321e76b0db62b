"""Extractive answers for the grounded chat (no model).

The evidence is cut into the pieces it is made of: sentences, list items, shell and query
commands (with the line that introduces them), alert labels, a change's header and description,
a log pattern and its sample line, a responder's note. A question is read into its content
words (with the kind of answer it wants: a person, a time, a number, a command) and each piece
is scored by how much of the question's information it carries; rare words weigh more than
common ones (inverse document frequency over the pieces). The answer is the best piece, plus a
piece from the same item or another one only when it answers a part of the question the first
one does not. When no piece carries more than half of the question, there is no answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from prompts.budget import ContextItem

# -- words ----------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOP = _words("""a about above after again all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers him his how i if in into is it its itself just me
more most my no nor not now of off on once only or other our out over own same she should so
some such than that the their them then there these they this those through to too under until
up very was we were what when where which while who whom why will with would you your yours
tell know please give show list us happened happening going get got think right currently
incident whose yet ever also let lets per via myself yourself himself herself ourselves
themselves""")

# Words a question uses to ask rather than to say what it is about: they are not required in
# the answer. Some of them name the kind of answer wanted (see _WANTS).
LIGHT = _words("""say says said mention mentioned mentions report reports reporting see seen
running look looks looking find
found show shows showed shown like exactly kind type sort thing things way ways outage problem
issue issues cause caused causing reason reasons happen happens occur occurred someone anyone
somebody person people responder responders engineer engineers command commands query queries
time times number count value name names version versions percent percentage step steps exact
specific detail details info information anything something current latest actually many
much often earlier previous past prior similar according regarding affected impacted involved
related use uses used using make makes made take takes took""")

# A few spellings of the same thing that stemming does not join.
SYNONYMS = {
    "db": ("database",), "database": ("db",),
    "postgres": ("postgresql", "pg"), "postgresql": ("postgres", "pg"), "pg": ("postgres",),
    "k8s": ("kubernetes",), "kubernetes": ("k8s",),
    "sev": ("severity",), "severity": ("sev",),
    # an onset is written "X since 14:03" as often as "X started"
    "start": ("since", "begin", "began"), "begin": ("since", "began"),
    # a verb and its noun where the stems part early
    "resolve": ("resolution",), "solve": ("solution",), "decide": ("decision",),
    "fail": ("failure",), "explain": ("explanation",), "describe": ("description",),
    "conclude": ("conclusion",), "maintain": ("maintenance",),
    # a limit is written as the maximum ("max_connections"); an expectation as an estimate
    "limit": ("max", "maximum"), "expect": ("estimate", "eta"), "eta": ("estimate",),
    # undoing a change is written as its revert or rollback
    "undo": ("revert", "rollback"), "revert": ("rollback",),
    # operators' shorthand: "bump the limit", "bounce the pods"
    "bump": ("raise", "increase"), "raise": ("increase",), "bounce": ("restart",),
    "conn": ("connection",), "dup": ("duplicate",), "cfg": ("config",), "msg": ("message",),
    "mem": ("memory",), "req": ("request",),
    # "ran out of connections" or "of disk" (read as "exhausted", see expand) is written as
    # exhaustion, saturation or a full disk
    "exhaust": ("saturated", "full", "fill"),
}

_SYNONYMS: dict[str, set[str]] = {}  # filled below, by stem


_MONTHS_DAYS = _words("""january february march april may june july august september october
november december jan feb mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday
thursday friday saturday sunday""")

CAMEL = "~"  # marks a stem that is a word inside a CamelCase name
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@%-]*[A-Za-z0-9%]|[A-Za-z0-9]")
_SEPARATORS = re.compile(r"[-_.:/@]+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


# Irregular past forms, read as their verb ("which node ran out of disk?" matches "running out
# of disk"). Forms that are also common nouns or adjectives (left, saw, found, lit) are left out.
IRREGULAR = {past: verb for verb, pasts in {
    "begin": "began begun", "break": "broke broken", "bring": "brought", "build": "built",
    "buy": "bought", "catch": "caught", "choose": "chose chosen", "come": "came",
    "draw": "drew drawn", "find": "found", "say": "said", "see": "saw seen",
    "drive": "drove driven", "eat": "ate eaten", "fall": "fell fallen", "feel": "felt",
    "fight": "fought", "fly": "flew flown", "forget": "forgot forgotten", "freeze": "froze frozen",
    "give": "gave given", "go": "went gone", "grow": "grew grown", "hang": "hung",
    "hear": "heard", "hide": "hid hidden", "hold": "held", "keep": "kept", "know": "knew known",
    "lead": "led", "lose": "lost", "make": "made", "mean": "meant", "meet": "met",
    "overwrite": "overwrote",
    "pay": "paid", "rerun": "reran", "rewrite": "rewrote rewritten", "ring": "rang rung",
    "rise": "rose risen", "run": "ran", "send": "sent", "shoot": "shot", "shrink": "shrank",
    "sink": "sank sunk", "sleep": "slept", "slide": "slid", "speak": "spoke spoken",
    "spend": "spent", "spin": "spun", "stick": "stuck", "strike": "struck", "swing": "swung",
    "take": "took taken", "teach": "taught", "tear": "tore torn", "tell": "told",
    "think": "thought", "throw": "threw thrown", "undo": "undid undone", "wake": "woke woken",
    "win": "won", "withdraw": "withdrew withdrawn", "write": "wrote written",
}.items() for past in pasts.split()}
_PAST_FORMS = "|".join(sorted(IRREGULAR))  # for regexes: "ran|sent|took|..."


# Operations words written as one word that questions split ("roll it back", "fail over").
COMPOUNDS = {w: tuple(parts.split()) for w, parts in {
    "rollback": "roll back", "rollbacks": "roll back", "rollout": "roll", "rollouts": "roll",
    "failover": "fail", "shutdown": "shut", "cleanup": "clean", "backup": "back",
    "startup": "start", "cutover": "cut", "hotfix": "fix"}.items()}


def stem(word: str) -> str:
    """Light stemming, the same for the question and the evidence: plurals, -ing, -ed, a
    doubled final consonant and a final e go (``ruling``, ``ruled``, ``rule`` → ``rul``;
    ``nodes`` → ``nod``; ``stopped`` → ``stop``; ``replied`` → ``reply``); an irregular past form becomes its verb
    (``ran`` → ``run``). Words with digits are identifiers, left alone; at least three letters
    stay."""
    word = IRREGULAR.get(word, word)
    if re.fullmatch(r"\d+[a-z]*\d*[a-z]*s", word) and len(word) > 3:
        return word[:-1]  # "503s", "5xxs", "429s": plurals of codes
    if any(c.isdigit() for c in word) or not word.isalpha():
        return word
    if word.endswith(("ies", "ied")) and len(word) > 4:  # replies, replied → reply
        return word[:-3] + "y"
    elif word.endswith("es") and word[-3:-2] in ("s", "x", "z") and len(word) > 4:
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """Words and identifiers, case kept (``orders-db-0``, ``1.4.2``, ``max_connections``)."""
    return _TOKEN.findall(text)


def forms(token: str) -> list[str]:
    """The stems a token can be matched by: itself, and for an identifier its parts and their
    concatenation (``on-call`` → ``on-call``, ``call``, ``oncall``; ``OrdersDBSaturated`` →
    ``orders``, ``db``, ``saturat``)."""
    low = token.lower()
    out = [stem(low)]
    if low in COMPOUNDS:  # "rollback" says "roll ... back"
        out += [stem(p) for p in COMPOUNDS[low]]
    if _SEPARATORS.search(low) and re.search(r"[a-z]", low):
        parts = [p for p in _SEPARATORS.split(low) if p]
        if "-" in low or "_" in low:
            out.append("".join(parts))
        out += [stem(p) for p in parts if len(p) >= 2 and p not in STOP]
    elif re.search(r"[a-z][A-Z]", token):
        # the words of a CamelCase name match a question's words ("orders db saturated"), but
        # not the parts of another identifier ("orders-db" is not OrdersDBLockWaitHigh)
        out += [CAMEL + stem(p.lower()) for p in _CAMEL.findall(token)
                if len(p) >= 2 and p.lower() not in STOP]
    return out


for _key, _values in SYNONYMS.items():  # both ways, by stem
    for _value in _values:
        _SYNONYMS.setdefault(stem(_key), set()).add(stem(_value))
        _SYNONYMS.setdefault(stem(_value), set()).add(stem(_key))


def text_forms(text: str) -> set[str]:
    out: set[str] = set()
    for token in tokens(_phrasal(text)):
        if token.lower() in STOP:
            continue
        out.update(forms(token))
    return out


def compatible(a: str, b: str) -> bool:
    """Two stems of the same word (``mitigat``/``mitigation``, ``config``/``configuration``): the
    shorter, at least five letters long, starts the longer, which goes on for at most seven
    more; or they share six letters and differ in the last one or two of the shorter. Shorter
    starts join unrelated words (``post``/``postgres``, ``approv``/``approach``), longer tails
    join a word to a compound name it begins (``orders``/``ordersdbconnectionssaturat``)."""
    if a == b:
        return True
    if a[:1] == CAMEL or b[:1] == CAMEL:
        return a[:1] == b[:1] and compatible(a[1:], b[1:])
    if not (a.isalpha() and b.isalpha()):
        return False
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    short, long_ = sorted((len(a), len(b)))
    if long_ - n > 7:
        return False
    return (n == short and n >= 5) or (n >= 6 and n >= short - 2)


# -- questions ------------------------------------------------------------------------------

WHO, WHEN, NUMBER, CODE, VERSION = "who", "when", "number", "code", "version"
DURATION = "duration"

_WANTS = [
    (WHO, re.compile(r"^\W*(who|whom|whose)\b|\bwhich (person|people|engineer|responder)\b")),
    # "when did/was X": a time; "when should we X" asks for a condition, not a time
    # "which pods were evicted, and when?": a second question at the end
    (WHEN, re.compile(r"^\W*when\s+(did|was|were|is|are|has|have|had|will)\b|\bwhat time\b|"
                      r"\bhow long ago\b|(\band|,)\s+when\W*$")),
    (NUMBER, re.compile(r"\bhow (many|much|long|big|large|high|low|often|fast|slow)\b|"
                        r"\bwhat (percentage|percent|ratio|number|count|rate|share|size|limit)\b|"
                        r"\bnumber of\b")),
    # "how long do they wait before giving up?": an amount of time ("30000 ms"), not any number;
    # "how long has it been down?" may also be answered by when it started
    (DURATION, re.compile(r"\bhow long\b(?! ago)")),
    (CODE, re.compile(r"\b(which|what) (\w+ )?(command|commands|query|queries|promql|sql)\b|"
                      r"\b(command|query) (do|should|can|to)\b")),
    (VERSION, re.compile(r"\b(which|what)( [\w-]+)? (version|build|release)\b|"
                         r"\b(version|build) of\b")),
]

# Words that say which kind of evidence a question is after.
_INTENT = {
    "change": re.compile(r"\b(deploy\w*|releas\w*|rollouts?|chang\w*|config\w*|flags?|"
                         r"merged?|pushe?d?|versions?)\b"),
    "log_pattern": re.compile(r"\b(logs?|logged|logging|log lines?|messages?|exceptions?|"
                              r"stack ?traces?)\b"
                              r"(?! (in|out|off|on)\b)"),
    "alert": re.compile(r"\b(alerts?|firing|fired|fire|threshold|annotations?|labels?)\b"),
    # "should we ...?", "can we just ...?": advice, which the runbooks give
    "runbook": re.compile(r"\b(runbooks?|how (do|can|should) (i|we)|what should (i|we)|"
                          r"(should|can|could) (i|we)|fix|mitigat\w*|steps?|procedure|"
                          r"commands?|queries|query|escalat\w*)\b"),
    "postmortem": re.compile(r"\b(postmortems?|previous|past (incidents?|outages?|events?)|"
                             r"in the past|earlier|similar|history|prior|last time|"
                             r"that time|before this|happened before|ago|january|february|"
                             r"march|april|june|july|august|september|october|november|"
                             r"december)\b|"
                             r"(?<![\d-])(19|20)\d\d(?![\d-])|"
                             # "have we had X before?"
                             r"^\W*(have|has|had|did)\b[^?]*\bbefore\s*(\?|$)"),
    "timeline": re.compile(r"\b(notes?|noted|reported|responders?|timeline)\b"),
}

# Sections of runbooks and postmortems a question may ask for by what they hold.
SECTION_CUES = {
    "Mitigation": re.compile(r"\b(mitigat\w*|fix|stop the bleeding|what should (i|we) do|"
                             r"what do (i|we) do|first step|next step|steps? to)\b"),
    "Escalation": re.compile(r"\b(escalat\w*|who (should|do) (i|we) (page|call|contact)|"
                             r"who owns)\b"),
    "Root cause": re.compile(r"\b(root cause|why did|why was|why were|"
                             r"what (caused|triggered|broke|was behind)|behind it)\b"),
    "Resolution": re.compile(r"\b(resolved|resolution|how was .* (fixed|resolved|mitigated)|"
                             r"what (finally )?(fixed|resolved|mitigated|ended|stopped) "
                             r"(it|that|that one|this one)|"
                             r"(got|get|getting) (us )?out of (it|this|that)|"
                             r"end(ed)? up doing|get (it|them|things) (\w+ing )?(back|again))\b"),
    "Action items": re.compile(r"\b(action items?|follow[- ]?ups?|prevent\w*)\b"),
}

_AUX = _words("is was were are has have had did does do will would should can could be been "
              "got get gets")


@dataclass
class Slot:
    """One content word of a question: its stem, the evidence stems that match it, and for an
    identifier its parts (a partial match earns the share of its parts found)."""

    word: str
    stems: set[str]
    parts: list[set[str]] = field(default_factory=list)
    name: bool = False  # a name or identifier (capitalised, digits, punctuation)
    # an identifier with digits (ip-10-52-3-14, api-com-dns01): its digits tell it from its
    # siblings (ip-10-52-7-88, api-com-http01), so naming only some of its parts is naming
    # another thing; so does a CamelCase name of three words or more (RedisMemoryHigh is not
    # RedisEvictionsHigh)
    numbered: bool = False
    matches: set[str] = field(default_factory=set)
    part_matches: list[set[str]] = field(default_factory=list)
    weight: float = 1.0

    def match(self, have: set[str]) -> float:
        if self.matches & have:
            return 1.0
        if self.part_matches:
            found = sum(1 for p in self.part_matches if p & have)
            return found / len(self.part_matches)
        return 0.0

    def names(self, have: set[str]) -> float:
        """How far ``have`` names this slot's thing: a numbered identifier only in full."""
        value = self.match(have)
        return value if value == 1.0 or not self.numbered else 0.0


@dataclass
class Question:
    text: str
    slots: list[Slot]
    wants: set[str]
    intents: set[str]
    predicate: str | None  # the verb a "who ..."/"when was X ...ed" question asks about
    # the question proper, lower-cased: "merchants say confirming keeps failing. what is the
    # failure rate?" asks "what is the failure rate?" (the statement before it adds words to
    # look for, not what kind of answer is wanted)
    ask: str
    focus: list[str] = field(default_factory=list)  # "what is the <focus> of X" words

    @property
    def low(self) -> str:
        return self.text.lower()

    @cached_property
    def given(self) -> dict[str, set[str]]:
        """The times, amounts and versions the question itself states (an answer must add
        one, see _kind_factor)."""
        return {WHEN: _values(_TIME, self.text),
                NUMBER: (_values(_AMOUNT, _TIME.sub(" ", self.text))
                         | _values(_COUNT_WORD, self.text.lower())),
                DURATION: _values(_DURATION, self.text),
                VERSION: _values(_VERSIONISH, self.text)}


_CONTRACTIONS = [
    (re.compile(r"\b(who|what|where|when|which|how|that|there|it)['’]s\b", re.IGNORECASE),
     r"\1 is"),
    (re.compile(r"\b(can)['’]t\b", re.IGNORECASE), r"\1not"),
    (re.compile(r"\bwon['’]t\b", re.IGNORECASE), "will not"),
    (re.compile(r"\b(\w+)n['’]t\b", re.IGNORECASE), r"\1 not"),
    (re.compile(r"\b(\w+)['’]re\b", re.IGNORECASE), r"\1 are"),
    (re.compile(r"\b(\w+)['’]ve\b", re.IGNORECASE), r"\1 have"),
    (re.compile(r"\b(\w+)['’]ll\b", re.IGNORECASE), r"\1 will"),
    (re.compile(r"\b(i|you|we|they|he|she|it)['’]d\b", re.IGNORECASE), r"\1 would"),
    (re.compile(r"\b(i)['’]m\b", re.IGNORECASE), r"\1 am"),
    # typed in a hurry, without the apostrophe
    (re.compile(r"\b(what|who|where|how)s\b", re.IGNORECASE), r"\1 is"),
    (re.compile(r"\b(did|does|do|is|was|were|are|has|have|had|could|would|should)nt\b",
                re.IGNORECASE), r"\1 not"),
    (re.compile(r"\br(?= (we|they|you|u|the|these|those|there|all|any)\b)", re.IGNORECASE), "are"),
    (re.compile(r"\bu(?=[\s?!.,]|$)", re.IGNORECASE), "you"),
    (re.compile(r"\brn\b", re.IGNORECASE), "right now"),
    (re.compile(r"\b(vs\.?|versus)(?=\s)", re.IGNORECASE), "and"),
]


# "For the status update: have any emails been dropped?": the label says what the answer is
# for, not what it is about, and the question proper follows it.
_LABEL = re.compile(r"^\W*(for (the |a |our )?[\w -]{1,30}|re|q|quick q(uestion)?|question|"
                    r"[\w-]+ question|fyi|context)\s*:\s+(?=\S)", re.IGNORECASE)


def expand(text: str) -> str:
    """"Who's running it?" reads as "who is running it?", "we're" as "we are", "don't" as "do
    not" (the rules match the long form; a clipped "re" or "ve" is not a word to look for)."""
    text = _LABEL.sub("", text, count=1)
    for rx, long in _CONTRACTIONS:
        text = rx.sub(long, text)
    return _phrasal(text)


def _phrasal(text: str) -> str:
    """Verbs whose particle changes their sense, as one word: "ran out of connections" is
    "exhausted connections" (not "DBRE runs the query"), "logged out" is "logout" (not "the
    audit log")."""
    text = _RUN_OUT.sub(lambda m: f"exhausted {m.group(2).strip()}".rstrip(), text)
    return _LOG_INOUT.sub(lambda m: "logout" if m.group(2).lower() in ("out", "off")
                          else "login", text)


# "has ledger-db run out of connections?" is not about running anything ("DBRE runs the query")
_LOG_INOUT = re.compile(r"\blog(ged|s|ging)? (out|off|in|on)\b(?! (to|the|a|an|every|all)\b)",
                        re.IGNORECASE)
_RUN_OUT = re.compile(r"\b(run|runs|ran|running)\s+((?:[\w-]+\s+)?)out\b(?: of\b)?",
                      re.IGNORECASE)


_STATEMENT_END = re.compile(r"(?<=[.!:])\s+")


def asking_part(low: str) -> str:
    """From the first sentence with a question mark on, when statements come before it."""
    parts = _STATEMENT_END.split(low.strip())
    first = next((n for n, p in enumerate(parts) if "?" in p), 0)
    return " ".join(parts[first:])


def read_question(text: str) -> Question:
    text = expand(text)
    low = text.lower().strip()
    ask = asking_part(low)
    wants = {kind for kind, rx in _WANTS if rx.search(ask)}
    intents = {kind for kind, rx in _INTENT.items() if rx.search(low) or rx.search(ask)}
    # "when did X start?" asks for X's earliest record (see _by_time): the onset word is the
    # question's own, like "when", and the record need not say it
    asking = _ONSET_WORDS if WHEN in wants and _ONSET.search(low) else frozenset()
    if VERSION in wants:  # "which build is running?": the word names the kind of answer
        asking |= _VERSION_WORDS
    if _BEHIND.search(ask):  # "what was behind it?" asks for a cause, not for "behind"
        asking |= {"behind"}
    slots: list[Slot] = []
    seen: set[str] = set()
    for n, token in enumerate(tokens(text)):
        word = token.lower()
        if (word in STOP or word in LIGHT or word in asking
                or len(word) < 2 and not word.isdigit()):
            continue
        key = stem(word)
        if key in seen:
            continue
        seen.add(key)
        stems = {key, *_SYNONYMS.get(key, ())}
        all_forms = forms(token)
        # "DNS-01" written "dns01" (as in api-com-dns01) is the whole name (naming only its
        # parts is not)
        joined = "".join(_SEPARATORS.split(word)) if re.search(r"\w[-_]\w", word) else None
        if joined and joined in all_forms:
            stems.add(joined)
        parts = [{p} for p in dict.fromkeys(all_forms[1:]) if p != key]
        name = (any(c.isdigit() for c in token) or bool(_SEPARATORS.search(token))
                or (n > 0 and token[:1].isupper() and word not in _MONTHS_DAYS))
        numbered = bool(parts) and (any(c.isdigit() for c in token)
                                    or len(_CAMEL.findall(token)) >= 3)
        slots.append(Slot(word, stems, parts, name=name, numbered=numbered))
    return Question(text, slots, wants, intents, _predicate(ask), ask, _focus(ask))


_BEHIND = re.compile(r"\b(was|is|were|are|'s) behind\b|\bbehind (it|this|that)\b")
# "when does the new certificate expire?" asks when it will expire: a record that does not say
# it expires has no time for it
# ("when do we expect the reindex to finish?" asks for an estimate, which need not say "finish")
_WHEN_WILL = re.compile(r"^\W*when (does|do|will)\b(?! (we|you|they|i|anyone)\b)[^?]*\s([a-z]+)"
                        r"\W*$")


def _predicate(low: str) -> str | None:
    words = re.findall(r"[a-z][a-z'-]*", low)
    match = _WHEN_WILL.match(low)
    if match and match.group(3) not in STOP and match.group(3) not in LIGHT:
        return match.group(3)
    if words and words[0] == "who":
        rest = words[1:]
        while rest and rest[0] in _AUX:
            rest = rest[1:]
        if rest and rest[0] not in STOP and rest[0] not in LIGHT:
            return rest[0]
    match = re.match(r"^\W*(when|why|where|how|(?:at )?what time)\s+(was|were|is|are|has|have|"
                     r"had)\b.*\s([a-z]+(?:ed|en))( (?:back|out|up|down|off|over))?\W*$", low)
    if match and match.group(3) not in STOP:
        return match.group(3)
    match = _SHOULD_WE.match(low)
    if match and match.group(4) not in STOP and match.group(4) not in LIGHT:
        return match.group(4)
    match = _HOW_MANY_DONE.match(low)
    if match and match.group(2) not in STOP:
        return match.group(2)
    if (len(words) > 2 and words[0] in ("did", "does", "do", "has", "have", "had")
            and words[1] in _SOMEONE and words[2] not in STOP and words[2] not in LIGHT):
        return words[2]  # "did anyone review it?": the verb follows the subject
    if words and words[0] in ("did", "does", "do", "has", "have", "had", "was", "were"):
        # "did the billing-worker team approve the change?": the verb is the first word
        # followed by an object or a preposition ("approve the"), or a participle
        for word, after in zip(words[1:], [*words[2:], ""], strict=False):
            if word in STOP or word in LIGHT:
                continue
            if words[0] in ("was", "were") and re.search(r"(ed|en)$", word):
                return word
            if words[0] not in ("was", "were") and after in _OBJECT_START:
                return word
    return None


# "should we just bump max_connections?" is answered by what is said about bumping it
_SHOULD_WE = re.compile(r"^\W*(should|can|could|shall) (we|i) (just |simply |still |safely )?"
                        r"([a-z]+)\b")
# "how many pods got evicted off the node?": a count of what was evicted, not of anything
# ("how many checkout reqs failed?" says the verb without one)
_HOW_MANY_DONE = re.compile(r"^\W*how many\b[^?]*?\b(?:(got|get|were|was|have been|has been|"
                            r"had been)\s+)?([a-z]{3,}ed|logout|login|" + _PAST_FORMS + r")\b")
_SOMEONE = _words("anyone anybody someone somebody we they you he she i")
_OBJECT_START = _words("the a an any it this that these those its their our to on in with for "
                       "from at by")


_FOCUS = re.compile(r"^\W*(?:what|which|who)(?:'s|\s+is|\s+are|\s+was|\s+were)\s+"
                    r"(?:the\s+|a\s+|an\s+)?(?P<focus>.+?)"
                    r"(?:\s+(?:of|for|on|in|at|from|behind|by|between|during|after|before|"
                    r"when|that|which|who|per|according|to|with|about|under|into|across|"
                    r"did|does|do|is|are|was|were|has|have|had|should|would|could|can|"
                    r"will|must|need|needs)\b.*)?\W*$")


# "maxmemory-policy on redis-cache?", "lag on invoice-worker?": a question typed as the thing
# it asks for, then what it is about
_TERSE_FOCUS = re.compile(r"^\W*(?P<focus>[a-z0-9][\w.-]*(?:\s+[a-z0-9][\w.-]*){0,2}?)\s+"
                          r"(?:on|for|of|in|at|when)\b[^?]*\?\W*$")
_NOT_A_THING = _words("what whats which who whos when where why how is are was were did does do "
                      "has have had can could should would will any anything any1 pls please "
                      "check checking need get got show tell give find look")


def _focus(low: str) -> list[str]:
    """The head noun of the thing a "what is the X of Y?" question asks for: the last content
    word of X ("phone" in "what is the phone number of the on-call?"), with the word before it
    when that is a measure ("limit" in "what is the memory limit?" says only that there is a
    number). Empty when X is only asking words ("what is the number of ...")."""
    match = _FOCUS.match(low) or _TERSE_FOCUS.match(low)
    if not match or match.re is _TERSE_FOCUS and low.split()[0].strip("'") in _NOT_A_THING:
        return []
    words = [t.lower() for t in tokens(match.group("focus").replace("'s", " "))]
    words = [w for w in words if w not in STOP and w not in LIGHT and len(w) > 1]
    if len(words) >= 2 and stem(words[-1]) in _MEASURES:
        return words[-2:]
    return words[-1:]


# -- evidence pieces ------------------------------------------------------------------------


@dataclass
class Segment:
    """A piece of one evidence item: ``text`` is what the answer shows; ``say`` the stems the
    piece itself says (full credit); ``context`` those of its heading (half credit)."""

    item: ContextItem
    text: str
    say: set[str]
    context: set[str] = field(default_factory=set)
    code: bool = False
    order: int = 0
    robot: bool = False  # an automatic timeline echo of another record
    advice: bool = False  # an instruction ("Check recent deploys"): says what to do, not what is
    about: set[str] = field(default_factory=set)  # its document's services, alerts, date


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(])")
_BULLET = re.compile(r"^\s{0,3}(?:\d+[.)]|[-*+•])\s+")
_ROBOTS = frozenset({"copilot", "system", ""})
# What an item's kind says about all its pieces.
_KIND_WORDS = {"alert": "alert", "change": "change", "log_pattern": "log line",
               "timeline": "timeline", "runbook": "runbook", "postmortem": "postmortem"}


def split_sentences(text: str) -> list[str]:
    return [p.strip() for p in _SENTENCE_END.split(" ".join(text.split())) if p.strip()]


def segments(item: ContextItem) -> list[Segment]:
    """The pieces of one evidence item, by its kind."""
    maker = {"incident": _incident, "timeline": _timeline, "alert": _alert,
             "change": _change, "log_pattern": _pattern}.get(item.kind, _document)
    out = [s for s in maker(item) if len(s.text) >= 8]
    # what the piece is (a log line, an alert) is known, not said: it counts as a heading
    implied = text_forms(_KIND_WORDS.get(item.kind, ""))
    for n, seg in enumerate(out):
        seg.context |= implied
        seg.order = n
    return out


# A command line: inline code, a common operations CLI, or two or more option flags.
# (Tools whose names are also English words, make or vault, are left out.)
_CLI = re.compile(r"`[^`]{3,}`|(^|[\s(:])(kubectl|helm|argocd|psql|curl|docker|systemctl|"
                  r"journalctl|gcloud|terraform|redis-cli|etcdctl|patronictl|jq|grep|awk)\s|"
                  r"(\s--?[a-z][\w-]*[=\s][^\s]+.*){2,}")


def _seg(item: ContextItem, text: str, *, extra: str = "", context: str = "",
         code: bool = False, robot: bool = False) -> Segment:
    return Segment(item, text, text_forms(f"{text} {extra}"), text_forms(context),
                   code or bool(_CLI.search(text)), robot=robot)


def _incident(item: ContextItem) -> list[Segment]:
    first, _, rest = item.text.partition("\n")
    # generated text: every ". " ends a sentence, even before a lower-case word
    parts = [p.strip() for p in re.split(r"(?<=\.)\s+", first) if p.strip()]
    parts += split_sentences(rest)
    # "mitigated unknown" answers no "when were we mitigated?": a note may say it
    parts = [re.sub(r",?\s*\b(started|detected|acknowledged|mitigated|resolved) unknown\b", "", p)
             for p in parts]
    return [_seg(item, p) for p in parts]


_TIMELINE = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}) UTC \[([^\]]*)\] (.*?): (.*)$", re.DOTALL)


def _timeline(item: ContextItem) -> list[Segment]:
    match = _TIMELINE.match(item.text)
    if not match:
        return [_seg(item, s) for s in split_sentences(item.text)]
    day, hhmm, kind, actor, text = match.groups()
    robot = actor.strip().lower() in _ROBOTS
    if robot and kind == "logs":
        # "1031 log lines added": when the logs arrived, not when anything happened; what they
        # hold is in the log patterns, which are cited instead
        return []
    who = "" if robot else f", {actor}"
    text = " ".join(text.split()).replace("<*>", "…")
    pieces = [text] if len(text) <= 320 else split_sentences(text)
    return [_seg(item, f"{hhmm} UTC{who}: {p}", extra=f"{day} {kind}", robot=robot)
            for p in pieces]


# An alert's author may add what to do ("Check recent deploys and flag changes before ..."):
# like a runbook's advice, that says nothing about what happened in this incident.
_INSTRUCTION = re.compile(r"^(please\s+)?(check|run|verify|confirm|look|see|inspect|"
                          r"investigate|review|compare|consider|escalate|page|contact|call|"
                          r"roll|revert|restart|scale|drain|cordon|increase|raise|reduce|lower|"
                          r"disable|enable|follow|use|avoid|do not|don't|never|make sure|ensure|"
                          r"try|wait|open|watch|delete|remove|add|apply|set|stop|fail over|"
                          r"silence|ack|acknowledge)\b", re.IGNORECASE)
_ALERT_HEAD = re.compile(r"^(.*?\) since (?:\S+ \S+ UTC|unknown))\.\s*(.*)$", re.DOTALL)


def _alert(item: ContextItem) -> list[Segment]:
    name = item.title
    text = item.text
    expression = ""
    if " Expression: " in text:
        text, expression = text.split(" Expression: ", 1)
    labels = ""
    if " Labels: " in text:
        text, labels = text.rsplit(" Labels: ", 1)
    match = _ALERT_HEAD.match(text)
    head, body = (match.group(1), match.group(2)) if match else ("", text)
    out = [_seg(item, head)] if head else []
    for sentence in split_sentences(body):
        sentence = sentence.strip()
        if sentence in (".", "") or sentence.rstrip(".") == name:
            continue
        shown = sentence if name in sentence else f"{name}: {sentence}"
        seg = _seg(item, shown)
        seg.advice = bool(_INSTRUCTION.match(sentence))
        out.append(seg)
    for pair in re.split(r",\s+(?=[\w.-]+=)", labels.rstrip(". ")):
        key, _, value = pair.partition("=")
        if value and not key.startswith("__"):
            out.append(_seg(item, f"{name}: {key.strip()}={value.strip()}"))
    if expression:
        out.append(_seg(item, f"{name} expression: {expression.strip()}", code=True))
    return out


def _change(item: ContextItem) -> list[Segment]:
    head, sep, description = item.text.partition(": ")
    if not sep or " by " not in head:
        return [_seg(item, s) for s in split_sentences(item.text)]
    name = " ".join(head.split(" at ", 1)[0].split())
    out = [_seg(item, _capital(" ".join(head.split())))]
    # a short description is one statement of what the change did: kept whole
    description = " ".join(description.split())
    pieces = [description] if len(description) <= 320 else split_sentences(description)
    for piece in pieces:
        out.append(_seg(item, f"{_capital(name)}: {piece}"))
    return out


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _pattern(item: ContextItem) -> list[Segment]:
    first, _, sample = item.text.partition("\n")
    out = [_seg(item, first.replace("<*>", "…"))]
    sample = sample.strip()
    if sample:
        level = first.split(" ", 1)[0]
        template = first.split(": ", 1)[-1]
        out.append(_seg(item, f"{sample.replace('Example line', f'Example {level} line', 1)}",
                        context=template))
    return out


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
# "may" is more often the verb than the month
_MONTH_WORDS = frozenset(m.lower() for m in _MONTHS) - {"may"}
_MONTH_STEMS = frozenset(stem(m) for m in _MONTH_WORDS)


def _about(item: ContextItem) -> str:
    """What a document's metadata says it is about: its services, alerts and date (as words,
    so "the March outage" finds a postmortem dated 2025-03-14)."""
    meta = item.meta or {}
    words: list[str] = []
    for key in ("services", "alerts"):
        value = meta.get(key)
        if isinstance(value, list | tuple):
            words += [str(v) for v in value]
        elif isinstance(value, str):
            words.append(value)
    date = re.match(r"(\d{4})-(\d{2})-(\d{2})", str(meta.get("date") or ""))
    if date and 1 <= int(date.group(2)) <= 12:
        words += [date.group(0), date.group(1), _MONTHS[int(date.group(2)) - 1]]
    return " ".join(words)


def _open_quote(text: str) -> bool:
    return text.count('"') % 2 == 1 or (text.count("'") % 2 == 1 and "'" not in text[-1:])


_OPERATOR = re.compile(r"^(/|\*|\+|-|and|or|unless|\|)$")


def _commands(lines: list[str]) -> list[tuple[str, str]]:
    """(comment, command) for each logical command of a code block: continuation lines
    (trailing ``\\`` or ``|``, an open quote, a lone operator) are joined."""
    out: list[tuple[str, str]] = []
    comment: list[str] = []
    current: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#") and not current:
            comment.append(line.lstrip("# ").strip())
            continue
        if _OPERATOR.match(line) and out and not current:
            previous_comment, previous = out.pop()
            current = [previous, line]
            comment = [previous_comment] if previous_comment else []
            continue
        current.append(line.rstrip("\\").strip() if line.endswith("\\") else line)
        joined = " ".join(current)
        if line.endswith(("\\", "|", "&&")) or _open_quote(joined) or _OPERATOR.match(line):
            continue
        out.append((" ".join(comment), joined))
        comment, current = [], []
    if current:
        out.append((" ".join(comment), " ".join(current)))
    return out


def _code_block(item: ContextItem, block: list[str], lead: str,
                context: str) -> list[Segment]:
    out = []
    for comment, command in _commands(block):
        intro = "; ".join(x for x in (lead.rstrip(":"), comment) if x)
        shown = f"{intro}: `{command}`" if intro else f"`{command}`"
        out.append(_seg(item, shown, context=context, code=True))
    return out


def _document(item: ContextItem) -> list[Segment]:
    """A Markdown passage: prose sentences, list items, and each command of a code block shown
    with the line that introduces it (``Pooler view: `psql ... -c 'SHOW POOLS;'` ``)."""
    head, _, body = item.text.partition("\n")
    if not body:
        head, body = item.title, item.text
    context = head
    about = text_forms(_about(item))
    out: list[Segment] = []
    paragraph: list[str] = []
    bullet: list[str] = []
    block: list[str] = []
    fenced = False
    lead = ""

    def flush() -> None:
        nonlocal paragraph, bullet
        if bullet:
            out.append(_seg(item, " ".join(bullet), context=context, code="`" in bullet[0]))
        for sentence in split_sentences(" ".join(paragraph)):
            out.append(_seg(item, sentence, context=context))
        paragraph, bullet = [], []

    for raw in body.splitlines():
        line = raw.rstrip()
        if line.strip().startswith("```"):
            if fenced:
                out += _code_block(item, block, lead, context)
                block, lead = [], ""
            else:
                flush()
            fenced = not fenced
            continue
        if fenced:
            block.append(line)
            continue
        if not line.strip():
            flush()
            continue
        if re.match(r"^\s{0,3}#{1,6}\s", line):
            flush()
            context = f"{item.title} {line.strip('# ')}"
            continue
        if _BULLET.match(line):
            flush()
            bullet = [_BULLET.sub("", line).strip()]
            continue
        if bullet and raw[:1] in (" ", "\t"):
            bullet.append(line.strip())
            continue
        if line.strip().endswith(":"):
            flush()
            lead = line.strip()
            continue
        if bullet:
            flush()
        paragraph.append(line.strip())
    flush()
    if fenced and block:  # a passage cut inside a code block
        out += _code_block(item, block, lead, context)
    for seg in out:
        seg.about = about
    return out


# -- answering ------------------------------------------------------------------------------

# A piece answers when it carries more than half of the question's weighted words: words only
# in its heading count half, so a heading alone never makes an answer.
THRESHOLD = 0.5
# A piece without the command "which command" asks for is at most a partial answer (see
# _kind_factor); a "who" question is not answered by a piece that names nobody.
MISSING_KIND = 0.6
# Ranking only (never whether to answer): the kind of evidence the question names ("in the
# logs", "the runbook") over others, and the primary record over the timeline's automatic
# echo of it. A quarter is the size of the effect: it settles near ties, never turns a clearly
# better piece into a loser.
INTENT_BONUS = 1.25
ECHO_PENALTY = 0.9
# A question that names no other source ("what is the 5xx ratio?") is about this incident:
# its own records rank before a past incident's or a runbook's words for the same thing.
OWN_BONUS = 1.1
OWN_KINDS = frozenset({"incident", "timeline", "alert", "change", "log_pattern", "log"})
# One to three sentences; a second source only when it is nearly as good as the first (within
# a fifth) and answers a real part of the question the first leaves out (a quarter of its
# weight; a sixth for another sentence of the same item, which costs no citation).
MAX_LINES = 3
NEARLY_AS_GOOD = 0.8
NEW_PART = 0.25
NEW_PART_SAME_ITEM = 0.15

# A postmortem is the record of another incident: its numbers, versions and times are not this
# one's, so it answers only a question about past incidents. A runbook is general advice: it
# answers a question asking what to do or how things normally go, not one about what this
# incident's responders did, are doing or expect ("which node did we cordon?", "which command
# are we using?", "when do we expect to catch up?").
_ADVICE = re.compile(r"\b(should|can|could) (i|we)\b|\bhow (do|can|should|would) (i|we|you)\b|"
                     r"\bwhat should\b|\bis there (a|any) way\b|\bis it (safe|ok|okay)\b|"
                     r"\b(normally|usually|typically|supposed to|recommended|in general)\b|"
                     r"\bwhat happens (if|when)\b")
_EVENTS = re.compile(r"\bwhat (does|did|do) (?!(the|this|that|our|a) (runbooks?|postmortems?|"
                     r"docs?|alerts?|logs?|playbooks?)\b)[\w-]+( team)? (think|reckon|believe)\b|"
                     r"\b(did|was|were|had|has been|have been|since when|so far|right now|"
                     r"currently|at the moment|eta|expect|expected|expecting)\b|"
                     r"\b(are|were)( not)? (we|they|you)( \w+)? \w+ing\b|"
                     r"\b(we|they) (are|were) \w+ing\b|"
                     r"\b(is|are)\b.{0,40}\b(running|using|serving|reporting|showing)\b|"
                     r"\b(is|are)\b.{0,40}\b(broken|down|affected|impacted|failing|healthy|fine|"
                     r"working|degraded|late|delayed|lost|stuck|slow|behind|missing|"
                     r"duplicated|exhausted|full|filling|saturated|evicting|throttled)\b|"
                     r"\b(who|we|they) (\w+ed|" + _PAST_FORMS + r")\b|"
                     # "what's the current lag?", "lag rn?": a value now, which no runbook has
                     r"\b(the|our) current\b|\brn\b|\bnow\b(?! that\b)|\bhow close\b|"
                     r"\b(tonight|today|this (morning|afternoon|evening))\b|"
                     r"\bgot \w+ed\b|"  # "which pods got evicted?"
                     # "what flag change filled up redis?", "what caused this?"
                     r"^\W*(what|which) ((?!(is|are|was|were|does|do|did|has|have|had|should|"
                     r"can|could|would|will)\b)[\w-]+ ){0,2}(\w{3,}ed|"
                     + _PAST_FORMS + r")\b(?! by\b)|"
                     # "what is eating the disk?", "who is handling comms?": going on now
                     r"\b(what|who|which \w+) (is|are) (?!(the|a|an|this|that|our|your|its|"
                     r"their)\b)([\w-]+ )?(?!(thing|nothing|something|anything|string|logging|"
                     r"setting|warning|ping|during|staging|billing|pricing|routing|caching|"
                     r"monitoring|alerting|paging|morning|evening)\b)\w{2,}ing\b(?![\w-])")


# "Is any other node filling up like ip-10-52-7-88?" asks for another thing of the same kind
# as the one it names after "like", "than" or "besides": a piece that names only that one does
# not answer it ("the other node that is filling up, ip-10-52-3-14" names the one it asks about).
_OTHER = re.compile(r"\b(other|another|else)\b.*?\b(like|than|as)\b(.*)$|"
                    r"\b(besides|apart from|aside from|except( for)?)\b(.*)$")
# A question in the evidence (a runbook's checklist) answers nothing, nor does a pointer to
# other documents ("See rb-redis-memory-evictions and rb-feature-flag-rollback.").
_ASKS = re.compile(r"\?[\s\"'`)*]*$|^\W*(see( also)?|refer to|cf\.?)\s", re.IGNORECASE)


def _shape(token: str) -> str:
    return re.sub(r"\d+", "#", token.lower())


def _names_another(text: str, names: list[str]) -> bool:
    """Whether ``text`` names a thing like one of ``names`` (ip-10-52-3-14 for ip-10-52-7-88;
    for a name without digits, any other identifier) that is not one of them."""
    own = {n.lower() for n in names}
    shapes = {_shape(n) for n in names if any(c.isdigit() for c in n)}
    for token in tokens(text):
        low = token.lower()
        if low in own:
            continue
        if shapes and _shape(low) in shapes:
            return True
        if not shapes and _SEPARATORS.search(low) and re.search(r"[a-z]", low):
            return True
    return False


def about_events(question: str) -> bool:
    """A question about what this incident's people did, are doing or expect."""
    low = expand(question).lower()
    return not _ADVICE.search(low) and bool(_EVENTS.search(low))


_THIS_INCIDENT = re.compile(r"\b(this|the current|our current) (incident|outage)\b|"
                            r"\bduring the (incident|outage)\b|\bright now\b|\bso far\b")
_PAST = re.compile(r"\b(did|was|were|had)\b")
# A question about the future (a plan, a prediction) is not in records of what happened;
# "what happens if ..." and "what will happen when ..." ask for a runbook's conditions.
_FUTURE = re.compile(r"\b(will|going to|gonna|plan(s|ned)? to|next (week|month|quarter|year|"
                     r"sprint|release)|tomorrow|eta|scheduled|expect(ed|ing)?|going live)\b|"
                     r"\b(is|are)\b[^?]*\b(shipping|landing|launching)\b")
# What the records can say of the future: a stated plan or estimate.
_PLANNED = re.compile(r"\b(estimat\w*|expect\w*|eta|plan(s|ned)?|scheduled|targets?|will|"
                      r"going to|next)\b", re.IGNORECASE)
# "Has X been merged yet?" asks whether X was done, "is X ready now?" how things stand: a
# record of X as a plan or a request is not an answer.
_DONE_YET = re.compile(r"^\W*(has|have|had)\b.*\b(been|\w+ed|done|made|" + _PAST_FORMS + r")\b|"
                       r"\byet\b|"
                       r"^\W*(is|are)\b.*\b(now|currently|already|still)\b|"
                       r"^\W*(did|do|does)\b[^?]*\b(finish|complete|wrap)\w*|"
                       r"\b(did|has|have)\b[^?]*\b(finish|complete)\w* [a-z]+ing\b|"
                       r"^\W*(is|are)\b[^?]*\b(done|finished|completed?|over)\W*$|"
                       # "did that actually happen?": the decision is not that it happened
                       r"^\W*(did|has|have) (that|it|this|they) (actually |really |ever )?"
                       r"(happen|happened|go ahead|gone ahead|get done|been done)\b")
# ("Decision: revert through the pipeline" does not say the revert is out.)
# Its action is the participle ("been rotated", "rolled back") or what was to be finished
# ("finished rotating"); a piece answers it only by saying the action was done ("rotated"),
# not that it was asked for ("asked them to rotate it").
_FINISHING = re.compile(r"\b(?:finish|finished|complete|completed|done|stop|stopped)\s+"
                        r"([a-z]+ing)\b")
_PLAN_ONLY = re.compile(r"\b(next( steps?)?:|follow[- ]?ups?:|decision:|(will|plans? to|planned|"
                        r"going to|to do|todo|should|asked|requested|pending|waiting (on|for)|"
                        r"decided|agreed to)\b)",
                        re.IGNORECASE)
# "We treat duplicate charges as possible until payments-core has checked" says the check has
# not happened: it does not say what the check found, nor that it is done.
_PENDING = re.compile(r"\b(until|till|before)\b[^.;]{0,60}\b(has|have)\s+(been\s+)?"
                      r"([a-z]+ed|" + _PAST_FORMS + r")\b", re.IGNORECASE)
# "What's the highest lag we logged?", "latest lag number in the logs?" ask for one value of
# many: a log pattern cannot say which was highest or latest (its numbers are masked, "lag is
# … messages", and its example line is one line of many).
_EXTREME = re.compile(r"\b(highest|peak|peaked|max|maximum|lowest|minimum|latest|most recent|"
                      r"last (\w+ )?(value|number|reading|count|figure))\b(?![.-]\w)")
# "What has to happen before r1342 is pushed again?" asks for a precondition: a piece that
# answers states one ("confirms the certificate is Ready before it is pushed again"); the note
# that r1342 was pushed and reverted does not.
_PRECONDITION = re.compile(r"\b(has|have|needs?|must|got) (to )?(happen|be done)\b[^?]*"
                           r"\bbefore\b")
# "What did Marlow & Finch reply?", "what did relaytext say about the receipts?" ask for what
# someone said: a piece answers by reporting speech, or by being that person's own note
_SAID_Q = re.compile(r"^\W*what (did|does|do|has|have|had) (?P<who>[\w&.' -]{2,40}?) "
                     r"(say|said|reply|replied|respond|responded|answer|answered|tell|told|"
                     r"write back|wrote back|report|reported)\b")
_NOT_A_SPEAKER = re.compile(r"\b(logs?|runbooks?|postmortems?|alerts?|docs?|documentation|"
                            r"dashboards?|graphs?|metrics|playbooks?|notes?|timeline|records?|"
                            r"changes?|config|errors?|messages?|page|it|they|we|you)\b")
_SPEECH = re.compile(r"\b(said|says|say|replied|replies|reply|responded|responds|response|"
                     r"answered|answers|told|tells|wrote|writes|reported|reports|confirmed|"
                     r"confirms|according to|stated|states)\b|\"", re.IGNORECASE)
_NOTE_BY = re.compile(r"^\d\d:\d\d UTC, ([^:]{3,60}):")


def _said_by(seg: Segment, who: str) -> bool:
    """The piece reports speech, or is a note by the person (a word of their name) asked about."""
    if _SPEECH.search(seg.text):
        return True
    author = _NOTE_BY.match(seg.text)
    return bool(author) and any(len(w) > 2 and re.search(rf"\b{re.escape(w)}\b", who)
                                for w in author.group(1).lower().split())


# "Once r1342 is fixed, which secret should the listener reference?" asks for the corrected
# state: the record of the change says what it did, which is what the fix undoes
_CORRECTED = re.compile(r"\b(once|after|before|when|until)\b[^?]*\b(fix(ed|es)?|corrected|"
                        r"(pushed|applied|deployed|rolled out|shipped) again|re-?(push|deploy|"
                        r"appl(y|ie))\w*)\b[^?]*\b(supposed to|should|instead|(has|have|needs?|"
                        r"must) to (change|be changed|be fixed))\b|"
                        r"\b(supposed to|should)\b[^?]*\b(once|after|before|when|until)\b"
                        r"[^?]*\b(fix(ed|es)?|corrected|(pushed|applied|deployed) again|"
                        r"re-?(push|deploy|appl(y|ie))\w*)\b")
# "Why were the receipts missing?": a record that names them only in a purpose ("debug on to
# chase missing Relaytext receipts") says what someone set out to find, not the cause
# "At what time had every pod picked up the reverted config?" asks when something was done
_WHEN_DONE = re.compile(r"^\W*(when|(at )?what time) (had|has|have|did|was|were)\b")
# (a plan stated as such; "asked X to rotate the key" may be an aside in a record of work done)
_PLAN_MARK = re.compile(r"\b(next( steps?)?:|follow[- ]?ups?:|decision:|(will|plans? to|planned|"
                        r"going to)\b)", re.IGNORECASE)
_ABOUT_PLANS = re.compile(r"\b(decid\w*|decision|ask\w*|plan\w*|request\w*|agree\w*|"
                          r"schedul\w*|announc\w*|post\w*|said|say)\b")
_WHY = re.compile(r"\bwhy\b|\bcaus\w*|\breasons?\b")
_PURPOSE = re.compile(r"\bto (chase|investigate|debug|find|look into|track down|understand|"
                      r"diagnose|figure out|work out|dig into)\b[^.;]*", re.IGNORECASE)
_STATES_CONDITION = re.compile(r"\b(before|first|until|once|only (after|when|if))\b",
                               re.IGNORECASE)
# A note's own time ("14:10 UTC, Kim Park: ...") is when it was written, not a time it states.
_OWN_STAMP = re.compile(r"^\s*(\d{4}-\d{2}-\d{2} )?\d{1,2}:\d{2}( UTC)?,? [^:]{0,60}:\s*")
_CONDITION = re.compile(r"\b(if|once|unless|whenever)\b|\S.*\bwhen\b")

# Words for a quantity: "what is the error rate?" is answered by "the confirm route is at 21.3%".
_MEASURES = frozenset(stem(w) for w in _words("""rate ratio percentage percent share count
number total amount size limit level value duration latency threshold usage utilization
capacity"""))
# Heads that ask for an amount (a level or a value may be a word: "log level ERROR", "value
# allkeys-lru"); "lag" must also be said
_AMOUNTS = _MEASURES - {stem("level"), stem("value")} | {stem("lag")}
_TIME = re.compile(r"\b\d{1,2}:\d{2}\b|\b\d{4}-\d{2}-\d{2}\b|\bmin (before|after)\b")
# a count or amount: a number that is not part of a clock time or a date
# (not in AKIA4F7Q or c41e9a0, nor the 3 of "3-D Secure")
_AMOUNT = re.compile(r"(?<![\w:.-])\d[\d,.]*(?![\d:])(?!-\d\d-)(?!-[A-Za-z])")
# a version: 1.4.2, v3, @r118, 15.4 (but not 11.6 GiB or 14.6%)
_VERSIONISH = re.compile(r"\b\d+(\.\d+){2,}\b|\b\d+\.\d+\b(?![.\d]|\s*(%|[A-Za-z]))|"
                         r"\bv\d+(\.\d+)*\b|@r?\d+")
_DURATION = re.compile(r"\b\d[\d,.]*\s*(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|"
                       r"hrs?|hours?|d|days?|weeks?)\b|\b\d+m\d+s\b|\b(an?|one|half an?) "
                       r"(second|minute|hour|day|week)\b", re.IGNORECASE)
# a count written as a word: "evicted both notification-service pods"
_COUNT_WORD = re.compile(r"\b(both|none|no one|nobody|twice|two|three|four|five|six|"
                         r"seven|eight|nine|ten|eleven|twelve|a dozen|dozens|hundreds|"
                         r"thousands)\b")
_SINCE = re.compile(r"\b(been|since|so far)\b")
# (not the user and password of a URL: redis://default:secret@host is nobody)
_EMAIL = re.compile(r"(?<![\w.+:/-])[\w.+-]+@[\w-]+\.[\w.]+")
_WHO_WORDS = re.compile(r"\b(team|on-?call|owner|owns|lead|engineer|dbre|sre|assignee|"
                        r"commander|by)\b", re.IGNORECASE)


# A question that names a kind of document ("the runbook steps for ...", "in the logs") is
# answered from that kind only: a matching alert is not the runbook it asked for.
_NAMED_KINDS = {
    ("runbook",): re.compile(r"\b(runbooks?|playbooks?)\b"),
    # "has this happened before? what fixed it that time?" is only about past incidents
    ("postmortem",): re.compile(r"\b(post-?mortems?|(past|previous|earlier|prior|older) "
                                r"(incidents?|outages?)|happened before|that time|last time)\b|"
                                r"^\W*(have|has|had|did)\b[^?]*\bbefore\s*(\?|$)"),
    ("log_pattern", "log"): re.compile(r"\b(in|from) the ([\w-]+ )?logs?\b|"
                                       r"\blog (lines?|messages?)\b|"
                                       r"\b(logging|logged)\b(?! (in|out|off|on)\b)"),
}
# "When did X start?" asks for the onset: of the pieces that answer about as well, the earliest
# record; "which version is running now?" asks for the latest one.
_ONSET_WORDS = _words("start started starts begin began first onset")
_ONSET = re.compile(r"\b(" + "|".join(sorted(_ONSET_WORDS)) + r")\b")
_VERSION_WORDS = _words("version versions build builds release releases")
_LATEST = re.compile(r"\b(now|currently|current|latest|at the moment|still)\b")
_STAMP = re.compile(r"\b(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2})")


def _stamp(item: ContextItem) -> str | None:
    match = _STAMP.search(item.text)
    return f"{match.group(1)} {match.group(2)}" if match else None


def named_kinds(question: str) -> set[str]:
    low = question.lower()
    return {k for kinds, rx in _NAMED_KINDS.items() if rx.search(low) for k in kinds}


# "Invoices will be late unless the backlog is worked off" foretells a consequence; it is not
# an estimate of when the backlog will be worked off.
_ESTIMATE = re.compile(r"\b(estimat\w*|expect\w*|eta|plan(s|ned)?|scheduled|targets?)\b",
                       re.IGNORECASE)
_IF = re.compile(r"\b(unless|if|until|otherwise)\b", re.IGNORECASE)


def _planned(seg: Segment, question: Question) -> bool:
    text = _OWN_STAMP.sub("", seg.text, count=1)
    if _IF.search(text) and not _ESTIMATE.search(text):
        return False
    # "Mitigated at 06:38. Next steps: Rasmus fixes r1342 ..." gives no time for the next step:
    # the time must be in a sentence that states the plan
    plans = [x for x in split_sentences(text) if _PLANNED.search(x)]
    return bool(plans) and (WHEN not in question.wants
                            or any(_TIME.search(x) for x in plans))


def _participle(word: str) -> bool:
    return word in IRREGULAR or len(word) > 4 and word.endswith("ed")


def _done_action(low: str) -> str | None:
    """The action a "has X been done yet?" question asks about, as a stem ("rotat")."""
    finishing = _FINISHING.search(low)
    if finishing:
        return stem(finishing.group(1))
    words = [w for w in re.findall(r"[a-z]+", low) if w not in STOP and _participle(w)]
    return stem(words[-1]) if words else None


def _says_done(text: str, action: str) -> bool:
    return any(_participle(w) and compatible(stem(w), action)
               for w in re.findall(r"[a-z]+", _phrasal(text).lower()))


def about_future(question: str) -> bool:
    low = question.lower()
    return bool(_FUTURE.search(low)) and not _CONDITION.search(low)


@dataclass
class Scored:
    segment: Segment
    score: float  # coverage times the answer-kind factor: decides whether it answers
    rank: float  # score with the ranking preferences
    matched: set[int]


@dataclass
class Answer:
    pieces: list[Scored]
    question: Question


def _has_person(text: str, people: Iterable[str]) -> bool:
    low = text.lower()
    return (any(p.lower() in low for p in people if len(p) > 2) or bool(_EMAIL.search(text))
            or bool(_WHO_WORDS.search(text)))


def _values(rx: re.Pattern[str], text: str) -> set[str]:
    return {m.group(0) for m in rx.finditer(text)}


def _kind_factor(seg: Segment, question: Question, people: Iterable[str]) -> float:
    """1 when the piece holds the kind of thing asked for; 0 when the question asks for a value
    of a recognisable form (a time, an amount, a version) or for someone (a person, a team, an
    address) and the piece has none but the question's own ("what ran before 2.84.0?" is not
    answered by a record of 2.84.0); MISSING_KIND when a command is asked for and the piece
    shows none (commands are recognised by rough cues, so their absence only counts against
    it)."""
    text, wants, given = seg.text, question.wants, question.given
    if WHEN in wants and not _values(_TIME, text) - given[WHEN]:
        return 0.0
    if NUMBER in wants and not (_values(_AMOUNT, _TIME.sub(" ", text)) - given[NUMBER]
                                or _values(_COUNT_WORD, text.lower()) - given[NUMBER]):
        return 0.0
    if (DURATION in wants and not _values(_DURATION, text) - given[DURATION]
            and not (_SINCE.search(question.low) and _values(_TIME, text) - given[WHEN])):
        return 0.0
    if VERSION in wants and not _values(_VERSIONISH, text) - given[VERSION]:
        return 0.0
    if WHO in wants and not _has_person(text, people):
        return 0.0
    factor = 1.0
    if CODE in wants and not seg.code:
        factor = MISSING_KIND
    return factor


def _link(question: Question, segs: list[Segment]) -> None:
    """Resolve each slot's stems to the evidence stems they match, and weigh it by inverse
    document frequency over the pieces (a word no piece has weighs the most)."""
    vocab: set[str] = set()
    for seg in segs:
        vocab |= seg.say | seg.context | seg.about
    n = len(segs)
    for slot in question.slots:
        stems = slot.stems | {CAMEL + s for s in slot.stems}
        slot.matches = {v for v in vocab if any(compatible(s, v) for s in stems)}
        # a part of "error-rate" is also a word of a CamelCase name (CheckoutHighErrorRate)
        slot.part_matches = [{v for v in vocab
                              if any(compatible(p, v) or compatible(CAMEL + p, v) for p in part)}
                             for part in slot.parts]
        # pieces that say the whole word: a part shared with other names is not the word
        df = sum(1 for seg in segs if slot.match(seg.say | seg.context | seg.about) == 1.0)
        slot.weight = math.log((n + 1) / (df + 1)) + 1


def unknown_name(question: Question) -> Slot | None:
    """A name or identifier of the question that the evidence never mentions: the evidence is
    about something else (another company, system, version), whatever else matches."""
    for slot in question.slots:
        if slot.name and not slot.matches and not any(slot.part_matches):
            return slot
    return None


def extract_answer(question_text: str, items: list[ContextItem], *,
                   people: Iterable[str] = (), future: bool = False,
                   services: Iterable[str] = ()) -> Answer | None:
    """The pieces of evidence that answer the question, best first; None when none does.
    ``future``: a question about what will happen, answered only by a stated plan or
    estimate (and for "when", by a time the piece states, not the time it was written).
    ``services``: the incident's own, which its responders' notes are about without naming
    them ("Not raising maxmemory" in the redis-cache incident)."""
    question = read_question(question_text)
    if not question.slots:
        return None
    segs = [s for item in items for s in segments(item)]
    if not segs:
        return None
    _link(question, segs)
    if unknown_name(question):
        return None
    # The words an answer must say: the verb of "who approved X?", and the thing "what is the
    # phone number of X?" asks for (for a measure, "what is the error rate?", a number will
    # do). A piece that does not say them answers a neighbouring question.
    verb = next((n for n, s in enumerate(question.slots) if s.word == question.predicate), None)
    heads = [n for n, s in enumerate(question.slots) if s.word in question.focus]
    names = [n for n, s in enumerate(question.slots) if s.name]
    own = not question.intents & {"runbook", "postmortem"}
    # "during this incident": the question rules out past incidents and general advice; "who
    # is on call?": a past incident's postmortem cannot say how things are now
    only_own = own and bool(_THIS_INCIDENT.search(question.low))
    # ("The runbook says payments-core should run the check. Was it run?" asks about this
    # incident: the sentence before the question names the runbook, the question does not; a
    # label before it, "NodeFilesystemAlmostFull runbook: what do I do first?", does name it)
    label = re.match(r"^\W*([^.!?:]{1,60}):\s", question.low)
    kinds = named_kinds(question.ask) | (named_kinds(label.group(1)) if label else set())
    postmortems_ok = "postmortem" in question.intents or "postmortem" in kinds
    ask = question.ask
    past = bool(_PAST.search(ask))
    advice = bool(_ADVICE.search(ask))
    # ("has ledger-db exhausted connections before?" asks about past incidents, not whether
    # something was done yet)
    done_yet = not future and not postmortems_ok and bool(_DONE_YET.search(ask))
    # "is the revert out on every pod yet?" is about this incident, which no runbook records
    runbooks_ok = "runbook" in kinds or not (about_events(ask) or done_yet)
    action = _done_action(ask) if done_yet else None
    extreme = bool(_EXTREME.search(ask))
    precondition = bool(_PRECONDITION.search(ask))
    corrected = bool(_CORRECTED.search(ask))
    speaker = _SAID_Q.search(ask)
    if speaker and _NOT_A_SPEAKER.search(speaker.group("who")):
        speaker = None  # "what do the worker logs say?": a record's text says it
    why = bool(_WHY.search(ask))
    errors_asked = bool(re.search(r"\berrors?\b", ask)) and not re.search(r"\bwarn", ask)
    when_done = (WHEN in question.wants and bool(_WHEN_DONE.search(ask))
                 and not _ABOUT_PLANS.search(ask))
    cued = tuple(name.lower() for name, cue in SECTION_CUES.items() if cue.search(question.low))
    total = sum(s.weight for s in question.slots)
    people = list(people)
    implied = {f for name in services for f in text_forms(name)}
    months = {stem(w) for w in re.findall(r"[a-z]+", question.low) if w in _MONTH_WORDS}
    contrast = _OTHER.search(question.text)
    other = [t for t in tokens(contrast.group(3) or contrast.group(6) or "")
             if _SEPARATORS.search(t) or any(c.isdigit() for c in t)] if contrast else []
    # the thing an "other" question names is the one the answer is not about
    contrasted = {t.lower() for t in other}
    names = [n for n in names if question.slots[n].word not in contrasted]
    scored: list[Scored] = []
    for seg in segs:
        got = 0.0
        matched: set[int] = set()
        for n, slot in enumerate(question.slots):
            full = slot.match(seg.say)
            half = 0.5 * slot.match(seg.context | seg.about)
            value = max(full, half)
            if value > 0:
                matched.add(n)
                got += slot.weight * value
        if not matched or _ASKS.search(seg.text):
            continue
        if (only_own and seg.item.kind not in OWN_KINDS
                or not postmortems_ok and seg.item.kind == "postmortem"
                or not runbooks_ok and seg.item.kind == "runbook"
                or kinds and seg.item.kind not in kinds):
            continue
        if seg.advice and not (runbooks_ok and (advice or "alert" in question.intents)):
            continue  # an alert's instruction answers what to do, not what happened
        if months and seg.about & _MONTH_STEMS and not seg.about & months:
            continue  # "the November 1 billing run" is not the March one
        if future and not _planned(seg, question):
            continue
        if precondition and not _STATES_CONDITION.search(seg.text):
            continue
        if corrected and seg.item.kind == "change":
            continue
        if speaker and not _said_by(seg, speaker.group("who")):
            continue
        if why and _PURPOSE.search(seg.text):
            # "to chase missing Relaytext receipts" is an aim, not a cause: the piece must
            # answer without it
            outside = text_forms(_PURPOSE.sub(" ", seg.text))
            kept = sum(s.weight * s.match(outside) for n, s in enumerate(question.slots)
                       if n in matched)
            if (any(question.slots[n].names(outside) < 0.5 for n in names)
                    or kept / total <= THRESHOLD):
                continue
        if extreme and seg.item.kind == "log_pattern":
            continue
        if (done_yet or past) and _PENDING.search(seg.text):
            continue
        if when_done and _PLAN_MARK.search(seg.text):
            continue  # "Decision: revert ..." does not say when the revert was done
        if done_yet and (_PLAN_ONLY.search(seg.text)
                         or action is not None and not _says_done(seg.text, action)):
            continue
        heard = seg.say | seg.context
        if verb is not None and question.slots[verb].match(heard) < 1.0:
            continue
        # a measure ("error rate", "lag") asks for an amount, which the piece must give
        amount = bool(_AMOUNT.search(_TIME.sub(" ", seg.text)))
        if any(stem(question.slots[n].word) in _AMOUNTS and not amount
               or stem(question.slots[n].word) not in _MEASURES
               and question.slots[n].match(heard) < 1.0 for n in heads):
            continue
        # a question that names something (a service, an alert, a person, a version) is about
        # it: a piece that does not name it, nor is under a heading that does, is about
        # something else
        named = heard | seg.about if "runbook" in question.intents else heard
        if seg.item.kind == "timeline":
            named = named | implied
        if other and not _names_another(seg.text, other):
            continue
        if any(question.slots[n].names(named) < 0.5 for n in names):
            continue
        score = got / total * _kind_factor(seg, question, people)
        if score == 0.0:
            continue
        rank = score
        if seg.item.kind in question.intents:
            rank *= INTENT_BONUS
        if seg.robot:
            rank *= ECHO_PENALTY
        elif seg.item.kind == "timeline" and (past or advice):
            # "what did X do?": responders' notes record what was done; "should we X?": what
            # this incident's responders decided about X comes before a runbook's advice
            rank *= INTENT_BONUS
        if own and seg.item.kind in OWN_KINDS:
            rank *= OWN_BONUS
        if (errors_asked and seg.item.kind == "log_pattern"
                and str(seg.item.meta.get("level") or "").upper().startswith("WARN")):
            rank *= ECHO_PENALTY  # "what error is pgbouncer logging?": the ERROR pattern first
        scored.append(Scored(seg, score, rank, matched))
    if cued:
        # "what was behind it that time?" names the Root cause section by what it holds: when
        # that section of a document answers, the document's other sections do not
        kinds_in = {s.segment.item.kind for s in scored if s.score > THRESHOLD and _in(s, cued)}
        scored = [s for s in scored if s.segment.item.kind not in kinds_in or _in(s, cued)]
    scored.sort(key=lambda s: (-s.rank, s.segment.item.rank, s.segment.order))
    if not scored or scored[0].score <= THRESHOLD:
        return None
    _by_time(scored, question)
    return Answer(_choose(scored, question), question)


def _in(scored: Scored, sections: tuple[str, ...]) -> bool:
    return str(scored.segment.item.meta.get("section", "")).lower().startswith(sections)


def _by_time(scored: list[Scored], question: Question) -> None:
    """Puts first, of the pieces nearly as good as the best, the earliest record for an
    onset question and the latest for a question about how things are now."""
    onset = WHEN in question.wants and bool(_ONSET.search(question.low))
    latest = not onset and bool(_LATEST.search(question.low))
    if not (onset or latest):
        return
    best = scored[0].score
    timed = [(stamp, n) for n, s in enumerate(scored)
             if s.score >= NEARLY_AS_GOOD * best and (stamp := _stamp(s.segment.item))]
    if not timed:
        return
    _, pick = min(timed) if onset else max(timed, key=lambda t: (t[0], -t[1]))
    scored.insert(0, scored.pop(pick))


_SEVERAL = re.compile(r"\b(steps|commands|what are|which are|list|all)\b")
_TWO_ASKS = re.compile(r"\b(and|also|as well as|plus)\b|[,;&]")


def _choose(scored: list[Scored], question: Question) -> list[Scored]:
    """The best piece; then more pieces of the same item when they answer a part of the
    question it does not, or the question asks for several things (steps, commands). A piece
    of another item is added only for a question that asks two things ("what changed and who
    merged it?") and when it answers the part the best piece leaves out: a citation that does
    not support the answer is worse than a shorter answer."""
    best = scored[0]
    chosen = [best]
    covered = set(best.matched)
    shown = {_norm(best.segment.text)}
    several = bool(_SEVERAL.search(question.low))
    two_asks = bool(_TWO_ASKS.search(question.low))
    for cand in scored[1:]:
        if len(chosen) == MAX_LINES:
            break
        if cand.score <= THRESHOLD or _norm(cand.segment.text) in shown:
            continue
        same = cand.segment.item.id == best.segment.item.id
        adds = _gain(question, cand.matched - covered)
        close = cand.score >= NEARLY_AS_GOOD * best.score
        if same:
            if not (adds >= NEW_PART_SAME_ITEM or (several and close)):
                continue
        elif not (two_asks and adds >= NEW_PART and close):
            continue
        chosen.append(cand)
        covered |= cand.matched
        shown.add(_norm(cand.segment.text))
    if len(chosen) > 1:  # same-item pieces read in their own order
        chosen = [chosen[0]] + sorted(chosen[1:], key=lambda s: (
            s.segment.item.id != best.segment.item.id, s.segment.order))
    return chosen


def _gain(question: Question, adds: set[int]) -> float:
    total = sum(s.weight for s in question.slots)
    return sum(question.slots[n].weight for n in adds) / total


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()



# -- a past incident's story ------------------------------------------------------------------
# "Have we had ledger-db run out of connections before? What was behind it that time?" asks
# which past incident this was and how it went. Its words name the incident, not a sentence:
# the postmortem is found by its title and passages together, and its Summary tells what
# happened and why (its Resolution, what ended it). A sentence-by-sentence match finds the
# timeline line that repeats the words ("14:16 DBRE runs the connection query") instead.
_STORY = re.compile(r"\bwhat happened\b|\bwhat (was|were) (the )?(root )?causes?\b|"
                    r"\bwhat caused\b|\bwhy (did|was|were)\b|\b(was|is) behind\b|"
                    r"\bbehind (it|this|that)\b|\bwhat (broke|blocked|triggered)\b|"
                    r"\bthe cause\b")
_ENDING = re.compile(r"\bwhat (finally )?(fixed|resolved|mitigated|ended|stopped|solved)\b|"
                     r"\bgot (us )?out of\b|\bhow (was|were|did) [^?]*\b(fixed|resolved|"
                     r"mitigated|end|ended|stop|stopped)\b")
# "what did that postmortem ask us to fix?": its action items
_FOLLOW_UPS = re.compile(r"\b(action items?|follow[- ]?ups?|recommend\w*|lessons? learned|"
                         r"ask(ed|s)? us to|told us to|(say|said|says|suggest\w*) (that )?"
                         r"(we|you) (should|must|need))\b")
# the words that ask for the story, not the ones that name the incident
_STORY_STEMS = frozenset(stem(w) for w in _words("""happened happen cause caused causes behind
broke blocked triggered fixed resolved mitigated ended stopped solved got time before once
again previous last earlier prior similar had incident incidents outage postmortem root action
item items follow up ups recommend recommended lesson lessons learned ask asked told fix say
said says suggest suggested should must need"""))
STORY_MIN = 0.7  # share of the naming words (by weight) the postmortem must say
STORY_DOCS = 3  # the likeliest postmortems whose story section joins the evidence
STORY_CHARS = 700
_BULLET = re.compile(r"^\s*([-*+]|\d+[.)])\s+")


def _says(slot: Slot, have: set[str]) -> float:
    """How far ``have`` says the slot's own word, not a synonym ("filled the WAL volume" is not
    the "run out of connections" a title names)."""
    if slot.name:
        return slot.match(have)
    own = stem(slot.word)
    return 1.0 if any(compatible(own, v) for v in have) else 0.0


def story_section(question_text: str) -> str | None:
    """The postmortem section a question about a past incident's story asks for."""
    low = expand(question_text).lower()
    if "postmortem" not in named_kinds(low):
        return None
    if _FOLLOW_UPS.search(low):
        return "Action items"
    return "Resolution" if _ENDING.search(low) else "Summary" if _STORY.search(low) else None


@dataclass
class Story:
    item: ContextItem  # the section's passage
    text: str  # its opening sentences
    section: str


def past_story(question_text: str, items: list[ContextItem]) -> Story | None:
    """The Summary (or Resolution) of the one postmortem a question about a past incident's
    story names; None when the question is not one, or no postmortem is clearly named."""
    section = story_section(question_text)
    if section is None:
        return None
    question = read_question(question_text)
    segs = [s for item in items for s in segments(item)]
    if not segs:
        return None
    _link(question, segs)
    topic = [s for s in question.slots if not (s.stems & _STORY_STEMS)]
    total = sum(s.weight for s in topic)
    if not topic or total == 0:
        return None
    docs: dict[str, list[ContextItem]] = {}
    for item in items:
        if item.kind == "postmortem" and item.meta.get("doc_id"):
            docs.setdefault(str(item.meta["doc_id"]), []).append(item)
    found: list[tuple[float, float, str]] = []  # (all its text, its title alone): the title
    for doc, parts in docs.items():             # names the incident, its passages may not
        have = text_forms(" ".join([parts[0].title, *(p.text for p in parts)]))
        have |= {v for seg in segs if seg.item in parts for v in seg.say | seg.about}
        if any(s.name and s.names(have) < 0.5 for s in topic):
            continue
        title = text_forms(parts[0].title) | text_forms(doc)
        found.append((sum(s.weight * s.match(have) for s in topic) / total,
                      sum(s.weight * _says(s, title) for s in topic) / total, doc))
    found.sort(reverse=True)
    if not found or found[0][0] < STORY_MIN or len(found) > 1 and found[1][:2] == found[0][:2]:
        return None
    wanted = [p for p in docs[found[0][2]]
              if str(p.meta.get("section", "")).lower().startswith(section.lower())]
    if not wanted:
        return None
    item = min(wanted, key=lambda p: p.rank)
    body = item.text.split("\n", 1)[-1] if item.text.startswith(item.title) else item.text
    paragraph = next((p for p in re.split(r"\n\s*\n", body) if p.strip()), "")
    lines = [x.strip() for x in paragraph.splitlines() if x.strip()]
    if lines and all(_BULLET.match(x) for x in lines):  # a list: its items, one by one
        units = [x if x[-1:] in ".!?" else f"{x}." for x in (_BULLET.sub("", y) for y in lines)]
    else:
        units = split_sentences(paragraph)
    text = ""
    for sentence in units:  # the story, up to about a paragraph's length
        if text and len(text) + len(sentence) > STORY_CHARS:
            break
        text = f"{text} {sentence}".strip()
    return Story(item, text, section) if text else None
