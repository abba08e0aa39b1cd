import { describe, expect, it } from "vitest";
import { loginFailure, providerHref, withoutLoginFailure } from "../src/lib/login";

describe("a provider's button", () => {
  it("goes to its login URL, told to come back to this page and its route", () => {
    expect(providerHref("/api/v1/auth/github/login", { pathname: "/", hash: "#/labs/dockerfile-basics" })).toBe(
      "/api/v1/auth/github/login?next=%2F%23%2Flabs%2Fdockerfile-basics",
    );
    expect(providerHref("/api/v1/auth/oidc/corp/login", { pathname: "/", hash: "" })).toBe(
      "/api/v1/auth/oidc/corp/login?next=%2F",
    );
    expect(providerHref("/login?x=1", { pathname: "/", hash: "" })).toBe("/login?x=1&next=%2F");
  });
});

describe("a failed sign-in", () => {
  it("is read from the query the server sends the browser back with, in the page's own words", () => {
    const failure = loginFailure("?login_error=not_allowed&message=Paste+your+token+at+evil.example");
    expect(failure).toEqual({
      code: "not_allowed",
      title: "This account may not sign in here",
      advice: "Ask the admin to allow your organisation, domain or address.",
    });
    expect(JSON.stringify(failure)).not.toContain("evil");
  });
  it("has a title for every code the server sends, and for one it does not know", () => {
    const codes = ["invalid_state", "refused", "not_allowed", "disabled", "provider_error", "busy", "store_unavailable", "not_found"];
    const titles = codes.map((code) => loginFailure(`?login_error=${code}`)!.title);
    expect(new Set(titles).size).toBe(codes.length);
    expect(titles).not.toContain("The sign-in failed");
    expect(loginFailure("?login_error=new_code")).toEqual({
      code: "new_code",
      title: "The sign-in failed",
      advice: "Sign in again from this page.",
    });
  });
  it("is nothing without login_error", () => {
    expect(loginFailure("")).toBeNull();
    expect(loginFailure("?message=hello")).toBeNull();
  });
  it("leaves the address without its query, the rest kept", () => {
    const at = (search: string, hash = "") => withoutLoginFailure({ pathname: "/", search, hash });
    expect(at("?login_error=busy")).toBe("/");
    expect(at("?login_error=busy&lang=de", "#/labs")).toBe("/?lang=de#/labs");
  });
});
