"""Any OpenAI-compatible endpoint (OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp server)."""

from __future__ import annotations

from collections.abc import Iterator

from copilot.llm.base import LLM, Message, ProviderError


class OpenAICompatibleLLM(LLM):
    def __init__(self, *, base_url: str | None, model: str, api_key: str | None,
                 timeout: float = 30.0, retries: int = 2) -> None:
        from openai import OpenAI

        self.model = model
        self.external = True
        self.name = f"openai:{model}"
        self._client = OpenAI(base_url=base_url, api_key=api_key or "not-needed",
                              timeout=timeout, max_retries=retries)

    def stream(self, messages: list[Message], *, max_tokens: int = 512,
               temperature: float = 0.0) -> Iterator[str]:
        import openai

        try:
            response = self._client.chat.completions.create(
                model=self.model, stream=True, max_tokens=max_tokens, temperature=temperature,
                messages=[{"role": m.role, "content": m.content} for m in messages],
            )
            for chunk in response:
                if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except openai.APITimeoutError as exc:
            raise ProviderError(f"{self.name}: timed out: {exc}") from exc
        except openai.APIConnectionError as exc:
            raise ProviderError(f"{self.name}: cannot connect: {exc}") from exc
        except openai.APIStatusError as exc:
            raise ProviderError(f"{self.name}: HTTP {exc.status_code}: {exc.message}") from exc
        except openai.OpenAIError as exc:
            raise ProviderError(f"{self.name}: {exc}") from exc
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:  # not OpenAI's shape
            raise ProviderError(f"{self.name}: unreadable response: {exc}") from exc
