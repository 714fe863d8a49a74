/** What the fixture app's page answers, as the production-shaped tests compare it across servers. */
export interface PageAnswer {
  status: number;
  /** Next's x-nextjs-cache header: HIT, STALE, MISS, or null. */
  cache: string | null;
  /** The page's data-render marker: `<page>|<server name>|...`, which server rendered it and when. */
  render: string | undefined;
}

export async function askPage(serverUrl: string, pathname: string): Promise<PageAnswer> {
  const res = await fetch(serverUrl + pathname, { redirect: 'manual' });
  const body = await res.text();
  return { status: res.status, cache: res.headers.get('x-nextjs-cache'), render: /data-render="([^"]*)"/.exec(body)?.[1] };
}
