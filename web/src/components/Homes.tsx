// Persistent homes: a user's files kept from one session of a template to the next (templates
// with `home = "persistent"`). The sessions page lists the caller's own, and only when there
// are some; the admin page lists everyone's.
import { useEffect, useState } from "preact/hooks";
import { api, type Home } from "../api";
import { homeSizeInWords, homeUseInWords } from "../lib/admin";
import { toast, toastError } from "../toasts";

/** `owner`: that user's homes only, the section hidden while they have none; without it,
 *  everyone's (the admin's view). */
export function Homes({ owner }: { owner?: string }) {
  const [homes, setHomes] = useState<Home[] | null>(null);
  const everyone = owner === undefined;

  const load = () =>
    api.homes(owner).then(setHomes, (err) => {
      setHomes((h) => h ?? []);
      toastError("Could not list the persistent homes", err);
    });

  // Read again every few seconds: a session that ends frees its home.
  useEffect(() => {
    load();
    const timer = setInterval(load, 10_000);
    return () => clearInterval(timer);
  }, [owner]);

  const remove = async (home: Home) => {
    const whose = everyone ? `${home.user}'s home` : "your home";
    if (
      !confirm(
        `Delete ${whose} for ${home.template} sessions? Every file in it is gone for good; the next ${home.template} session starts with an empty home.`,
      )
    ) {
      return;
    }
    try {
      await api.deleteHome(home.name);
      toast(`Deleted ${whose} for ${home.template} sessions`);
      load();
    } catch (err) {
      // While a session uses it (409), the server's message says which and what to do.
      toastError(`Could not delete ${whose} for ${home.template} sessions`, err);
    }
  };

  if (!everyone && !homes?.length) return null;
  return (
    <section class="card homes">
      <h2>{everyone ? "Persistent homes" : "Your persistent homes"}</h2>
      <p class="muted">
        Files kept from one session of a template to the next. Deleting one deletes its files; it cannot be deleted while
        a session uses it.
      </p>
      {homes === null ? (
        <p class="muted">Loading…</p>
      ) : homes.length === 0 ? (
        <p class="muted">No persistent homes: no template keeps its users' files, or nobody has used one yet.</p>
      ) : (
        <table class="table">
          <thead>
            <tr>
              {everyone && <th>User</th>}
              <th>Template</th>
              <th>Size limit</th>
              <th>Used</th>
              <th>Created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {homes.map((home) => (
              <tr key={home.name} data-home={home.name}>
                {everyone && <td>{home.user}</td>}
                <td title={home.name}>{home.template}</td>
                <td>{homeSizeInWords(home)}</td>
                <td>
                  {home.used_by ? (
                    <a href={everyone ? `#/timeline/${home.used_by}` : `#/s/${home.used_by}`}>{homeUseInWords(home)}</a>
                  ) : (
                    <span class="muted">{homeUseInWords(home)}</span>
                  )}
                </td>
                <td>{new Date(home.created_at).toLocaleString()}</td>
                <td class="actions">
                  <button class="danger" onClick={() => remove(home)}>
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
