import type { QdrantClient } from '@qdrant/js-client-rest';

export type Points = { id: string | number; vector: unknown; payload: unknown }[];

/** Every point of a collection with its vector and payload, page by page: what a restore must bring back. */
export async function allPoints(client: QdrantClient, collection: string): Promise<Points> {
  const points: Points = [];
  let offset: string | number | undefined | null;
  do {
    const page = await client.scroll(collection, { limit: 100, with_payload: true, with_vector: true, ...(offset !== undefined && offset !== null ? { offset } : {}) });
    points.push(...page.points.map((p) => ({ id: p.id, vector: p.vector, payload: p.payload })));
    offset = page.next_page_offset as string | number | null | undefined;
  } while (offset !== null && offset !== undefined);
  return points;
}
