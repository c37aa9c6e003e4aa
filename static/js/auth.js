// Sign up and sign in.
import { api, session } from "./api.js";
import { h, field, say, busy } from "./dom.js";

export function authPage(main, signup) {
  const email = field("Email", h("input", { type: "email", name: "email", autocomplete: "email", required: true }));
  const password = field(
    "Password",
    h("input", { type: "password", name: "password", autocomplete: signup ? "new-password" : "current-password", required: true, minlength: "8" }),
    signup ? "At least 8 characters." : null,
  );
  const message = h("p", { class: "msg", role: "alert" });
  const submit = h("button", { type: "submit" }, signup ? "Sign up" : "Sign in");
  const form = h("form", { class: "card narrow", novalidate: true }, email.wrap, password.wrap, submit, message);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    say(message, "");
    busy(submit, async () => {
      const creds = { email: email.input.value.trim(), password: password.input.value };
      try {
        if (signup) await api("POST", "/api/auth/register", creds);
        const { token } = await api("POST", "/api/auth/login", creds);
        session.set(token);
        location.hash = "#/";
      } catch (err) {
        say(message, err.message);
      }
    });
  });
  main.replaceChildren(
    h("h1", {}, signup ? "Create an account" : "Sign in"),
    form,
    h("p", {}, signup ? "Already have an account? " : "New here? ", h("a", { href: signup ? "#/login" : "#/signup" }, signup ? "Sign in" : "Create an account")),
  );
  email.input.focus();
}
